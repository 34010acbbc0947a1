"""Cross-encoder reranker: train from an encoder's weights on first-stage negatives, then
retrieve N -> rerank -> top K.

results.json: `baseline/test/...` is the first stage alone, `final/test/...` the reranked run.
Dev (checkpoint selection) reranks only the top `rerank.dev_n` of the dev queries (the collection's
own dev split, else a hold-out of the train queries). Every dev evaluation also chooses the mixing
weight w with the first stage (`interpolate`) among rerank.interpolate_grid (or rerank.interpolate)
and 1.0, the first stage alone: so the untrained reranker at step 0 scores as its first stage, and
a reranker that never beats its first stage on dev ends as the first stage alone, and says so.
First-stage runs are computed once per split (corpus embeddings come from the on-disk cache).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from ragtune.config import ModelConfig
from ragtune.data.folds import dev_set, dev_source_name, load_split
from ragtune.eval.metrics import evaluate
from ragtune.inference.backends import SmoothSettings, backend_cache_tag, for_inference, source_and_backend
from ragtune.inference.calibration import CALIBRATION_PER_QUERY, corpus_pairs
from ragtune.losses import compute_loss, loss_spec
from ragtune.models.cross_encoder import CrossEncoder, format_doc
from ragtune.models.encoder import ENCODER_META, Encoder, resolve_model_path
from ragtune.rerank import (
    EpochGroups,
    cascade,
    choose_interpolation,
    interpolate,
    load_score_cache,
    rerank_run,
    save_score_cache,
    teacher_records,
    training_groups,
)
from ragtune.retrieval.cache import cache_root, weights_fingerprint
from ragtune.retrieval.first_stage import first_stage_run
from ragtune.tasks import Task


def load_first_stage_encoder(cfg) -> Encoder:
    """rerank.first_stage_model: a saved ragtune Encoder folder, or an alias / HF folder with cfg.model
    pooling ('' -> cfg.model.name)."""
    name = cfg.rerank.first_stage_model or cfg.model.name
    path = resolve_model_path(name)
    if (path / ENCODER_META).is_file():
        return Encoder.load(path)
    return Encoder.from_config(ModelConfig(**{**cfg.model.__dict__, "name": name}))


def first_stage_runs(cfg, datasets: dict, show_progress: bool) -> tuple[dict, dict[str, float]]:
    """{split: run} for every dataset, and timings of the test split's first stage."""
    kind = cfg.rerank.first_stage
    encoder = load_first_stage_encoder(cfg) if kind != "bm25" else None
    runs, timings = {}, {}
    for split, dataset in datasets.items():
        depth = max(cfg.rerank.retrieve_n, cfg.rerank.hard_depth, *cfg.eval.k_values)
        runs[split], t = first_stage_run(kind, dataset, cfg, encoder=encoder, top_k=depth,
                                         show_progress=show_progress)
        if split == cfg.data.eval_split:
            timings.update({f"first_stage_{k}": v for k, v in t.items()})
    return runs, timings


def score_cache_path(cfg, model: CrossEncoder, split: str) -> Path:
    """Pair scores on disk, keyed by the weights and everything else that changes a score:
    reranking a second first stage (e.g. a fine-tuned bi-encoder) rescores only new pairs."""
    source, backend = source_and_backend(model)
    key = [weights_fingerprint(source), model.max_length, model.query_max_length, model.doc_template,
           cfg.data.dataset, split]
    if backend != "torch":  # fp32 keys as before backends
        key.append(backend_cache_tag(backend))
    if "int8" in backend:  # activations are quantized per batch: the batches shape the scores
        key += [cfg.rerank.batch_size, "even batches"]  # even_batches' split (not the earlier fixed-size one)
    if backend == "torch_int8_smooth":  # and the calibration's settings
        key += [list(cfg.rerank.int8_smooth_alphas), cfg.rerank.int8_calibration_queries, cfg.seed]
    key = hashlib.sha256(json.dumps(key).encode()).hexdigest()[:32]
    return cache_root(cfg.eval.cache_dir or None) / "rerank_scores" / f"{key}.json"


def rerank_backend(cfg) -> str:
    """The cross-encoders' backend: rerank.backend, or eval.backend when that is empty."""
    return cfg.rerank.backend or cfg.eval.backend


def for_rerank(cfg, model: CrossEncoder, corpus):
    """`model` on the cross-encoders' backend; torch_int8_smooth calibrates here, on unlabelled pairs of
    `corpus` ({doc_id: Doc})."""
    rc = cfg.rerank
    smooth = SmoothSettings(
        pairs=lambda: corpus_pairs(corpus, rc.int8_calibration_queries, CALIBRATION_PER_QUERY, cfg.seed,
                                   model.doc_template),
        alphas=rc.int8_smooth_alphas, batch_size=rc.batch_size)
    wrapped = for_inference(model, rerank_backend(cfg), cfg.eval.cache_dir or None, smooth=smooth)
    if rerank_backend(cfg) == "torch_int8_smooth":
        wrapped.prepare()  # calibrate now, so that the rerank timings count scoring alone
    return wrapped


def calibration_timings(model) -> dict[str, float]:
    """What torch_int8_smooth chose for `model` (timings.json); {} on the other backends."""
    calibration = getattr(model, "calibration", None)
    return calibration.summary() if calibration is not None else {}


def make_scorer(model: CrossEncoder, batch_size: int):
    return lambda queries, docs: model.score(queries, docs, batch_size=batch_size)


def build(cfg, accelerator) -> Task:
    rc = cfg.rerank
    loss_spec(cfg.loss.name, kinds=("score",), task="reranker")  # before any loading
    show = accelerator.is_main_process
    model = CrossEncoder.from_pretrained(cfg.model.name, max_length=rc.max_length,
                                         query_max_length=rc.query_max_length, doc_template=rc.doc_template)
    train = load_split(cfg, "train")
    test = load_split(cfg, "eval")
    doc_texts = {d: format_doc(doc, rc.doc_template) for d, doc in test.corpus.items()}
    dev, own_dev, train_qids = dev_set(cfg, train)
    doc_texts.update({d: format_doc(doc, rc.doc_template) for d, doc in dev.corpus.items()
                      if d not in doc_texts})
    runs, timings = first_stage_runs(cfg, {cfg.data.train_split: train, cfg.data.eval_split: test,
                                           **({"dev": dev} if own_dev is not None else {})}, show)
    if own_dev is None:  # the hold-out's first stage is the train split's
        runs["dev"] = {q: runs[cfg.data.train_split][q] for q in dev.queries}
    eval_qids = list(test.queries)[: rc.max_queries or None]
    timings["dev_source"] = dev_source_name(cfg, own_dev)
    cheap = CrossEncoder.from_pretrained(rc.cascade_model) if rc.cascade_model else None
    # 1.0 (the first stage alone) is always a candidate: reranking never ships worse than no reranking on dev.
    weights = sorted({*(rc.interpolate_grid or (rc.interpolate,)), 1.0})
    metric = cfg.train.metric_for_best

    def split_data(split_name: str):
        if split_name == "dev":
            return sorted(dev.queries), dev.queries, dev.qrels, runs["dev"], rc.dev_n
        return eval_qids, test.queries, test.qrels, runs[cfg.data.eval_split], rc.retrieve_n

    def baseline(split_name: str) -> dict[str, float]:
        qids, _, qrels, run, _ = split_data(split_name)
        return evaluate({q: run[q] for q in qids}, {q: qrels[q] for q in qids}, cfg.eval.k_values)

    def rerank_split(m: CrossEncoder, split_name: str):
        """(reranked top n, first-stage run, qrels) of a split's queries."""
        qids, queries, qrels, run, n = split_data(split_name)
        sub = {q: queries[q] for q in qids}
        scorer = make_scorer(m, rc.batch_size)
        if cheap is not None and split_name != "dev":
            cheap_m = for_rerank(cfg, cheap, test.corpus)
            reranked, stats = cascade([(make_scorer(cheap_m, rc.batch_size), rc.cascade_keep),
                                       (scorer, rc.final_k)], run, sub, doc_texts, n, show_progress=show)
            for i, s in enumerate(stats):
                timings.update(s.summary(f"cascade{i + 1}"))
        else:  # the cache is keyed on the weights: an update never reads stale scores
            path = score_cache_path(cfg, m, split_name)
            cache = load_score_cache(path)
            reranked, s = rerank_run(scorer, run, sub, doc_texts, n, n, cache=cache,
                                     show_progress=show, desc=f"rerank {split_name}")
            save_score_cache(path, cache)
            timings.update(s.summary(f"rerank_{split_name}"))
        return reranked, run, {q: qrels[q] for q in qids}

    def evaluate_split(m: CrossEncoder, split_name: str) -> dict[str, float]:
        """Metrics of the split reranked and mixed with the weight that is best on dev for these weights
        (dev scores come from the on-disk cache after the first time). The test evaluations run on
        eval.backend, their choice of w too; the dev evaluations inside training stay on torch."""
        if split_name != "dev":
            m = for_rerank(cfg, m, test.corpus)
        dev = rerank_split(m, "dev")
        w = choose_interpolation(*dev, weights, metric)[0]
        reranked, run, qrels = dev if split_name == "dev" else rerank_split(m, split_name)
        reranked = {q: dict(list(docs.items())[:rc.final_k]) for q, docs in interpolate(reranked, run, w).items()}
        if split_name != "dev":
            timings.update({"interpolate_chosen": w, **calibration_timings(m)})
            if w == 1.0:
                print(f"warning: the reranker does not beat its first stage on dev {metric}: "
                      f"final/{split_name} is the first stage alone (interpolate w=1.0)")
        return {**evaluate(reranked, qrels, cfg.eval.k_values), "interpolate": w}

    task = Task(model=model, evaluate=evaluate_split, baseline_evaluate=baseline, eval_splits=[cfg.data.eval_split],
                export=lambda m, path: m.save(path), timings=timings)
    if cfg.train.epochs == 0 and cfg.train.max_steps == 0:  # evaluation only (e.g. a saved reranker)
        return task

    train_run = runs[cfg.data.train_split]
    qrels = {q: train.qrels[q] for q in sorted(train_qids)}
    corpus_ids = list(train.corpus)
    groups = EpochGroups(lambda seed: training_groups(train_run, qrels, corpus_ids, rc.group_size, rc.hard_fraction,
                                                      rc.hard_depth, seed=seed),
                         seed=cfg.seed, resample=rc.resample_negatives)
    train_texts = {d: format_doc(doc, rc.doc_template) for d, doc in train.corpus.items()}

    def collate(batch: list[tuple[str, str, list[str]]]) -> dict[str, torch.Tensor]:
        queries = [train.queries[qid] for qid, _, negs in batch for _ in range(1 + len(negs))]
        docs = [train_texts[d] for _, pos, negs in batch for d in [pos, *negs]]  # [pos, neg_1..] per query
        return model.tokenize(queries, docs)

    def step_fn(m, batch):
        scores = m(**batch).view(-1, rc.group_size)  # (Q, G), column 0 = positive
        loss = compute_loss(cfg.loss, group_size=rc.group_size, scores=scores)
        return loss, {"pos_top1": (scores.argmax(dim=1) == 0).float().mean().item()}

    generator = torch.Generator().manual_seed(cfg.seed)
    loader = DataLoader(groups, batch_size=cfg.train.batch_size, shuffle=True, collate_fn=collate, generator=generator)
    timings.update({"train_groups": len(groups), "dev_queries": len(dev.queries)})
    positives = frozenset(d for q in train_qids for d, grade in train.qrels[q].items() if grade >= 1)
    return dataclasses.replace(task, train_loader=loader, step_fn=step_fn, train_positives=positives)


def write_teacher_file(cfg, show_progress: bool = True) -> Path:
    """Score first-stage groups of ALL train queries with the reranker `rerank.teacher_model` and
    write them to `data.train_file` for distillation into a bi-encoder (which holds out its own
    dev queries). Negatives: `rerank.group_size - 1` per positive, `hard_fraction` of them hard."""
    rc = cfg.rerank
    if not rc.teacher_model or not cfg.data.train_file:
        raise ValueError("set rerank.teacher_model (a saved reranker) and data.train_file (the JSONL to write)")
    teacher = CrossEncoder.from_pretrained(rc.teacher_model)
    train = load_split(cfg, "train")
    runs, _ = first_stage_runs(cfg, {cfg.data.train_split: train}, show_progress)
    groups = training_groups(runs[cfg.data.train_split], train.qrels, list(train.corpus), rc.group_size,
                             rc.hard_fraction, rc.hard_depth, seed=cfg.seed)
    texts = {d: format_doc(doc, teacher.doc_template) for d, doc in train.corpus.items()}
    records = teacher_records(lambda q, d: teacher.score(q, d, rc.batch_size, show_progress), groups,
                              train.queries, texts)
    for r in records:  # the bi-encoder embeds "title text", as in its own corpus encoding
        r["pos"], r["negs"] = train.corpus[r["pos_id"]].full_text(), [train.corpus[d].full_text()
                                                                       for d in r["neg_ids"]]
    path = Path(cfg.data.train_file)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def main(argv: list[str] | None = None) -> int:
    """`ragtune teacher-scores --config configs/scifact_distill.py`: write the distillation file."""
    import argparse
    import sys

    from ragtune.commands import parse_config_args
    from ragtune.config import ConfigError
    from ragtune.data.beir import DataError

    parser = argparse.ArgumentParser(description=write_teacher_file.__doc__, add_help=False)
    parser.add_argument("-h", "--help", action="store_true", help="this help and every config key")
    try:
        parsed = parse_config_args(parser, argv)
        if parsed is None:
            return 0
        print(f"wrote {write_teacher_file(parsed[1])}")
    except (ConfigError, DataError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0
