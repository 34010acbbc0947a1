"""No-label domain adaptation in one command: synthetic queries -> pseudo-labels -> training -> test.

    ragtune adapt --config configs/scifact_adapt.py
    ragtune adapt --config configs/scifact_adapt.py --data.dataset=cranfield --output_dir=runs/cranfield_adapt

Reads a BEIR folder's corpus and nothing else until the test evaluation. Under `output_dir`:
  synth/                  the local LM's queries (`ragtune synth`; generations resume from their log;
                          adapt.synth_dir shares one folder between runs), or with adapt.queries=sentences
  sentence_queries.jsonl  sentences cut from the documents, each positive its document without them
                          (ragtune/generation/corpus_queries.py)
  pseudo_labels.jsonl     task=query_tower: each kept query with the teacher's top adapt.teacher_top_k (no
                          positive: adapt.queries=log, an unlabelled query log, trains too); task=biencoder:
                          each kept query with its source document as positive, adapt.num_negatives
                          negatives from the zero-shot dense top adapt.negatives_depth and, with
                          adapt.teacher=hybrid, the teacher's scores (ragtune/generation/pseudo_labels.py);
                          pseudo_labels.stats.json holds the counts and the teacher's agreement
  train/                  the training run (`ragtune run`, config.task) on that file alone with
                          data.train_split=none: dev = synthetic queries of held-out source documents
                          (task=query_tower: no dev, a fixed budget and the last step)
  summary.json            the three stages' statistics and the run's results, written last
The test split's qrels are first opened by train/'s test evaluation, which scores the initial weights
(kept in memory) after training too, so no label reaches generation, pseudo-labels or selection.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from ragtune.commands import parse_config_args
from ragtune.config import ConfigError, apply_overrides, save_config
from ragtune.data.beir import NO_LABELS, DataError, dataset_dir, load_corpus_only, read_jsonl
from ragtune.generation.corpus_queries import sentence_queries
from ragtune.generation.pseudo_labels import HybridTeacher, dense_negatives, source_rank
from ragtune.models.encoder import Encoder
from ragtune.retrieval.bm25 import BM25Index
from ragtune.retrieval.cache import cached_encode
from ragtune.retrieval.first_stage import bm25_config
from ragtune.training.run_dir import atomic_write_text

TASKS = ("biencoder", "query_tower")


def check_adapt(cfg) -> None:
    """Fail before any generation or loading on settings the pipeline cannot run."""
    from ragtune.losses import loss_spec

    if cfg.task not in TASKS:
        raise ConfigError(f"task: ragtune adapt trains {TASKS}, got {cfg.task!r}")
    spec = loss_spec(cfg.loss.name)
    distill = spec.kind in ("distill", "corpus") or "teacher" in spec.params
    if cfg.task == "query_tower":
        from ragtune.tasks.query_tower import check_query_tower

        check_query_tower(train_config(cfg))
        if cfg.adapt.teacher != "hybrid":
            raise ConfigError("adapt.teacher=none: the query_tower task learns the teacher's lists, "
                              "set adapt.teacher=hybrid")
    elif spec.kind == "corpus":
        raise ConfigError(f"loss.name={cfg.loss.name!r} scores the whole corpus against a frozen index: it trains "
                          "task=query_tower, not task=biencoder")
    if cfg.adapt.queries == "log":
        if cfg.task != "query_tower":
            raise ConfigError("adapt.queries=log: a logged query has no source document to be its positive, so it "
                              "trains task=query_tower (the teacher's lists need none)")
        if cfg.adapt.filter != "none":
            raise ConfigError(f"adapt.filter={cfg.adapt.filter!r} ranks a query's source document, which a logged "
                              "query lacks: set adapt.filter=none")
        if not cfg.adapt.query_log or not Path(cfg.adapt.query_log).is_file():
            raise ConfigError(f"adapt.query_log={cfg.adapt.query_log!r}: adapt.queries=log reads the queries from "
                              "this file (JSONL rows with \"query\" or \"text\"), and it is not a file")
        own = dataset_dir(cfg.data.dataset, cfg.data.data_root or None) / "queries.jsonl"
        if own.is_file() and Path(cfg.adapt.query_log).resolve() == own.resolve():
            raise ConfigError(f"adapt.query_log={cfg.adapt.query_log!r} is {cfg.data.dataset}'s own queries.jsonl, "
                              f"which holds its {cfg.data.eval_split} queries: training on them is training on the "
                              "test; write a log of other queries (e.g. experiments/write_query_log.py)")
    if cfg.adapt.teacher == "hybrid" and not distill:
        raise ConfigError(f"loss.name={cfg.loss.name!r} ignores teacher scores: adapt.teacher=hybrid trains with "
                          "margin_mse, kl_distill or info_nce_kl_distill (or set adapt.teacher=none)")
    if cfg.adapt.teacher == "none" and distill:
        raise ConfigError(f"loss.name={cfg.loss.name!r} needs teacher scores: set adapt.teacher=hybrid")
    if cfg.adapt.teacher == "hybrid" and cfg.hybrid.weight <= 0:
        raise ConfigError("hybrid.weight: the hybrid teacher is written in the dense student's units, so its "
                          "dense share must be > 0")
    if distill and cfg.task == "biencoder" and cfg.data.num_negatives < 1:
        raise ConfigError(f"data.num_negatives: {cfg.loss.name} needs at least one negative per query")
    if cfg.data.num_negatives > cfg.adapt.num_negatives:
        raise ConfigError(f"data.num_negatives={cfg.data.num_negatives}: training draws them from the "
                          f"adapt.num_negatives={cfg.adapt.num_negatives} written per query")
    if cfg.adapt.queries == "sentences" and cfg.adapt.teacher == "hybrid" and cfg.task == "biencoder":
        raise ConfigError("adapt.teacher=hybrid: its scores are of whole documents, and adapt.queries=sentences "
                          "trains on documents with the query sentence removed: use adapt.teacher=none")
    if cfg.adapt.queries == "lm" and cfg.adapt.samples_per_chunk > cfg.synth.queries_per_chunk:
        raise ConfigError(f"adapt.samples_per_chunk={cfg.adapt.samples_per_chunk} exceeds synth.queries_per_chunk="
                          f"{cfg.synth.queries_per_chunk}")


def synth_dir(cfg) -> Path:
    return Path(cfg.adapt.synth_dir) if cfg.adapt.synth_dir else Path(cfg.output_dir) / "synth"


def query_file(cfg) -> Path:
    """Stage 1's output: one JSON row per query with its source document's id (`pos_id`)."""
    if cfg.adapt.queries == "sentences":
        return Path(cfg.output_dir) / "sentence_queries.jsonl"
    if cfg.adapt.queries == "log":
        return Path(cfg.adapt.query_log)
    return synth_dir(cfg) / "generated.jsonl"


def read_query_log(path: Path) -> list[dict]:
    """Rows {"query"} of an unlabelled query log: JSONL with "query" or "text" (the shape of BEIR's queries)."""
    rows = []
    for line, row in read_jsonl(path, ()):
        text = row.get("query", row.get("text"))
        if not isinstance(text, str) or not text.strip():
            raise DataError(f"{path}:{line}: a query log row needs a non-empty \"query\" or \"text\"; "
                            f"have {sorted(row)}")
        rows.append({"query": text})
    return rows


def cut_sentences(cfg) -> dict:
    """Stage 1 with adapt.queries=sentences: write query_file(cfg); returns its stats."""
    start = time.perf_counter()
    corpus = load_corpus_only(cfg.data.dataset, cfg.data.data_root or None).corpus
    rows = sentence_queries(corpus, cfg.adapt.sentences_per_doc, cfg.adapt.sentence_min_words, cfg.seed,
                            cfg.synth.max_docs)
    if not rows:
        raise DataError(f"{cfg.data.dataset}: no document has {cfg.adapt.sentences_per_doc + 1} sentences of "
                        f"{cfg.adapt.sentence_min_words}+ words to cut queries from")
    atomic_write_text(query_file(cfg), "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    return {"queries": len(rows), "docs": len({r["pos_id"] for r in rows}), "corpus_docs": len(corpus),
            "seconds": time.perf_counter() - start}


def synth_config(cfg):
    """The synth stage: its own folder, and no filter of its own (the pseudo-label stage filters)."""
    return dataclasses.replace(cfg, output_dir=str(synth_dir(cfg)),
                               synth=dataclasses.replace(cfg.synth, filter_top_k=0))


def train_config(cfg):
    """The training stage: the pseudo-labels alone, no train split, the baseline scored after training."""
    out = Path(cfg.output_dir)
    return apply_overrides(cfg, {"output_dir": str(out / "train"), "data.train_split": NO_LABELS,
                                 "data.train_file": str(out / "pseudo_labels.jsonl"), "data.dev_split": "holdout",
                                 "eval.baseline_after_training": True})


def read_generated(path: Path, samples_per_chunk: int) -> list[dict]:
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return [r for r in rows if samples_per_chunk <= 0 or r["sample"] < samples_per_chunk]


def pseudo_label(cfg, show_progress: bool = True) -> dict:
    """Stage 2: write <output_dir>/pseudo_labels.jsonl from synth/generated.jsonl; returns its stats."""
    out, acfg = Path(cfg.output_dir), cfg.adapt
    start = time.perf_counter()
    generated_file = query_file(cfg)
    generated = read_query_log(generated_file) if acfg.queries == "log" else \
        read_generated(generated_file, acfg.samples_per_chunk if acfg.queries == "lm" else 0)
    if not generated:
        raise DataError(f"{generated_file}: no generated queries to label")
    corpus = load_corpus_only(cfg.data.dataset, cfg.data.data_root or None).corpus
    doc_ids = list(corpus)
    position = {d: i for i, d in enumerate(doc_ids)}
    texts = [corpus[d].full_text() for d in doc_ids]
    queries = [r["query"] for r in generated]
    # a logged query has no source: column -1 marks it, and only the query_tower path (no filter) reads none
    source = np.array([position[r["pos_id"]] if "pos_id" in r else -1 for r in generated])

    encoder = Encoder.from_config(cfg.model)
    d_emb = cached_encode(encoder, texts, "doc", cfg.eval.cache_dir or None, cfg.eval.batch_size, show_progress)
    q_emb = encoder.encode(queries, kind="query", batch_size=cfg.eval.batch_size, show_progress=False)
    dense = q_emb @ d_emb.T  # (Q, D) cosine: the encoder's embeddings are normalised
    del encoder
    index = BM25Index.from_corpus(corpus, bm25_config(cfg.bm25))
    bm25 = np.stack([index.score_all(q) for q in tqdm(queries, desc="bm25", leave=False, disable=not show_progress)])
    teacher = HybridTeacher.from_scores(bm25, dense, cfg.hybrid.weight, cfg.hybrid.depth)
    if cfg.task == "query_tower":
        return write_lists(cfg, teacher, queries, source, [doc_ids, texts], start)

    teacher_rank, dense_rank = source_rank(teacher.hybrid, source), source_rank(dense, source)
    ranks = {"teacher": teacher_rank, "dense": dense_rank}.get(acfg.filter)
    kept = np.flatnonzero(ranks <= acfg.filter_top_k) if ranks is not None else np.arange(len(queries))
    qids = [f"synth-{i}" for i in range(len(queries))]
    negatives = dense_negatives(dense[kept], source[kept], acfg.negatives_depth, acfg.num_negatives,
                                cfg.seed, [qids[i] for i in kept])
    records, margins, agree = [], [], []
    for i, negs in zip(kept.tolist(), negatives, strict=True):
        # a sentence query's positive is its document without it; the filter and the negatives saw it whole
        positive = generated[i].get("pos") or texts[source[i]]
        record = {"qid": qids[i], "query": queries[i], "pos_id": doc_ids[source[i]], "pos": positive,
                  "neg_ids": [doc_ids[j] for j in negs], "negs": [texts[j] for j in negs]}
        if negs:
            cols = np.array([source[i], *negs])
            scores = teacher.student_units(np.full(len(cols), i), cols, cfg.hybrid.weight, cfg.loss.temperature)
            margins.extend((scores[0] - scores[1:]).tolist())
            agree.append(bool((scores[0] > scores[1:]).all()))
            if acfg.teacher == "hybrid":
                record["teacher_scores"] = scores.tolist()
        records.append(record)
    path = out / "pseudo_labels.jsonl"
    atomic_write_text(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))
    stats = {"queries": len(queries), "kept": len(records), "kept_fraction": len(records) / len(queries),
             "kept_docs": len({r["pos_id"] for r in records}), "corpus_docs": len(doc_ids),
             "filter": acfg.filter, "filter_top_k": acfg.filter_top_k, "teacher": acfg.teacher,
             "source_rank1_teacher": float((teacher_rank == 1).mean()),
             "source_rank1_dense": float((dense_rank == 1).mean()),
             "source_rank_median_teacher": float(np.median(teacher_rank)),
             "source_rank_median_dense": float(np.median(dense_rank)),
             # the teacher scores the source above every mined negative (over the kept queries)
             "teacher_source_above_negatives": float(np.mean(agree)) if agree else 0.0,
             "teacher_margin_mean": float(np.mean(margins)) if margins else 0.0,
             "seconds": time.perf_counter() - start}
    atomic_write_text(out / "pseudo_labels.stats.json", json.dumps(stats, indent=2) + "\n")
    return stats


def write_lists(cfg, teacher: HybridTeacher, queries: list[str], source: np.ndarray, corpus: list,
                start: float) -> dict:
    """Stage 2 for task=query_tower: each query's teacher top list (no positive, no negatives).

    A sentence query's source document holds the sentence, so it is kept out of that query's list;
    an LM query keeps its source (the teacher ranks it as it ranks any other document). Filtered by
    the teacher or the dense model as on the bi-encoder path; a logged query (no source) is never filtered."""
    out, acfg = Path(cfg.output_dir), cfg.adapt
    doc_ids = corpus[0]
    has_source = source >= 0
    ranks = {"teacher": source_rank(teacher.hybrid, np.maximum(source, 0)),
             "dense": source_rank(teacher.dense, np.maximum(source, 0))}.get(acfg.filter)
    keep = ~has_source | (ranks <= acfg.filter_top_k) if ranks is not None else np.ones(len(queries), bool)
    kept = np.flatnonzero(keep)
    exclude = source[kept] if acfg.queries == "sentences" else None
    sub = HybridTeacher(teacher.hybrid[kept], teacher.dense[kept], teacher.dense_range[kept])
    cols, scores = sub.top_lists(acfg.teacher_top_k, cfg.hybrid.weight, cfg.loss.temperature, exclude)
    lines = [json.dumps({"qid": f"synth-{i}", "query": queries[i], "cand_ids": [doc_ids[j] for j in row],
                         "cand_scores": [round(float(v), 4) for v in vals]}, ensure_ascii=False) + "\n"
             for i, row, vals in zip(kept.tolist(), cols, scores, strict=True)]
    atomic_write_text(out / "pseudo_labels.jsonl", "".join(lines))
    top = scores[:, 0] - scores[:, min(9, scores.shape[1] - 1)]
    stats = {"queries": len(queries), "kept": len(kept), "kept_fraction": len(kept) / len(queries),
             "filter": acfg.filter if has_source.any() else "none (no source)", "teacher": acfg.teacher,
             "teacher_top_k": acfg.teacher_top_k, "source_excluded": exclude is not None,
             # how peaked the lists are: the teacher's first minus its tenth score, in student units
             "teacher_top1_minus_top10_mean": float(top.mean()),
             "seconds": time.perf_counter() - start}
    if has_source.any() and exclude is None:
        rank = source_rank(teacher.hybrid[has_source], source[has_source])
        stats["source_rank1_teacher"] = float((rank == 1).mean())
    atomic_write_text(out / "pseudo_labels.stats.json", json.dumps(stats, indent=2) + "\n")
    return stats


def adapt(cfg) -> dict[str, float]:
    """All three stages; returns the training run's results."""
    from ragtune.commands.run import run
    from ragtune.commands.synth import synthesize

    check_adapt(cfg)
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:  # every process would generate and label the same queries
        raise ConfigError("ragtune adapt runs in one process; for several, run it once, then train on its "
                          "pseudo_labels.jsonl with `accelerate launch experiments/run.py` (train/config.json)")
    dataset_dir(cfg.data.dataset, cfg.data.data_root or None)
    train_cfg = train_config(cfg)  # validated now, before any minute of generation
    Path(cfg.output_dir).mkdir(parents=True, exist_ok=True)
    save_config(cfg, Path(cfg.output_dir) / "config.json")
    if cfg.adapt.queries == "sentences":
        print("stage 1/3: queries cut from the documents' sentences")
        synth_stats = cut_sentences(cfg)
    elif cfg.adapt.queries == "log":
        print(f"stage 1/3: the query log {cfg.adapt.query_log}")
        synth_stats = {"queries": len(read_query_log(query_file(cfg))), "source": cfg.adapt.query_log}
    else:
        print("stage 1/3: synthetic queries")
        synth_stats = synthesize(synth_config(cfg))
    print("stage 2/3: pseudo-labels")
    stats = pseudo_label(cfg)
    if cfg.task == "query_tower":
        print(f"kept {stats['kept']} of {stats['queries']} queries ({acfg_summary(cfg)}), each with the teacher's "
              f"top {cfg.adapt.teacher_top_k}")
    else:
        print(f"kept {stats['kept']} of {stats['queries']} queries ({acfg_summary(cfg)}); the teacher ranks the "
              f"source above every negative for {stats['teacher_source_above_negatives']:.1%} of them")
    print("stage 3/3: training on the pseudo-labels, then the test evaluation")
    torch.manual_seed(cfg.seed)
    results = run(train_cfg)
    summary = {"synth": synth_stats, "pseudo_labels": stats, "results": results}
    atomic_write_text(Path(cfg.output_dir) / "summary.json", json.dumps(summary, indent=2) + "\n")
    return results


def acfg_summary(cfg) -> str:
    a = cfg.adapt
    return "no filter" if a.filter == "none" else f"{a.filter} filter, source in the top {a.filter_top_k}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
                                     add_help=False)
    parser.add_argument("-h", "--help", action="store_true", help="this help and every config key")
    parser.add_argument("--overwrite", action="store_true", help="replace the training run already in output_dir/train")
    try:
        parsed = parse_config_args(parser, argv)
        if parsed is None:
            return 0
        args, cfg = parsed
        if args.overwrite:
            cfg = apply_overrides(cfg, {"overwrite": "true"})
        adapt(cfg)
    except (ConfigError, DataError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
