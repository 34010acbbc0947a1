"""Generate synthetic (query, passage) pairs from a corpus with a local LM; no labels are read.

    ragtune synth --config configs/scifact_synth.py [--synth.max_chunks=200 ...]

Writes to `output_dir`: synthetic_pairs.jsonl (kept pairs; train with
`--data.train_file=<output_dir>/synthetic_pairs.jsonl`), generated.jsonl (every deduped query with
its source doc, chunk and sample index, and round-trip rank), stats.json (counts, tokens/s) and config.json. Generations
are logged per batch to generations-<key>.partial.jsonl, so an interrupted run resumes where it
stopped (the key covers every setting that changes a generation: changing only the filter reuses
them); the final files are written atomically.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from ragtune.commands import parse_config_args
from ragtune.config import ConfigError, save_config
from ragtune.data.beir import DataError, load_corpus_only
from ragtune.eval.dense import corpus_texts
from ragtune.generation.synth import (
    INSTRUCTION,
    SYSTEM,
    chunk_tokens,
    generate_all,
    pair_rows,
    round_trip_filter,
    select_queries,
    write_pairs,
)
from ragtune.models.encoder import Encoder
from ragtune.models.generator import load_generator
from ragtune.retrieval.cache import cached_encode, texts_fingerprint


def select_passages(doc_ids: list[str], texts: list[str], tokenizer, scfg) -> tuple[list[str], list[int]]:
    """Chunks of a seeded random document order -> (passages, index of each one's document)."""
    order = np.random.default_rng(scfg.seed).permutation(len(doc_ids))  # random docs, never by qrels
    if scfg.max_docs > 0:
        order = order[:scfg.max_docs]
    passages, source = [], []
    for i in tqdm(order.tolist(), desc="chunk", leave=False):
        chunks = chunk_tokens(texts[i], tokenizer, scfg.chunk_size, scfg.chunk_overlap)
        for c in chunks[:scfg.max_chunks_per_doc or None]:
            passages.append(c)
            source.append(i)
        if 0 < scfg.max_chunks <= len(passages):
            return passages[:scfg.max_chunks], source[:scfg.max_chunks]
    return passages, source


def generation_key(scfg, passages: list[str]) -> str:
    """Hash of what changes a generation (not the filter settings), naming the resumable log."""
    fields = {k: v for k, v in dataclasses.asdict(scfg).items() if k not in ("filter_top_k", "min_words")}
    src = json.dumps({"synth": fields, "prompt": [SYSTEM, INSTRUCTION], "passages": texts_fingerprint(passages)},
                     sort_keys=True)
    return hashlib.sha256(src.encode()).hexdigest()[:16]


def synthesize(cfg) -> dict:
    scfg, out = cfg.synth, Path(cfg.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    save_config(cfg, out / "config.json")
    dataset = load_corpus_only(cfg.data.dataset, cfg.data.data_root or None)  # no queries, no qrels
    doc_ids, texts = corpus_texts(dataset)

    model, tokenizer = load_generator(scfg.generator, cfg.eval.cache_dir or None)
    model.eval()
    passages, source = select_passages(doc_ids, texts, tokenizer, scfg)
    if not passages:
        raise DataError(f"{cfg.data.dataset}: no passages to generate from (check synth.max_docs / max_chunks)")
    partial = out / f"generations-{generation_key(scfg, passages)}.partial.jsonl"
    bar = tqdm(total=len(passages), desc=f"generate ({len(passages)} chunks)", unit="chunk")
    generations, gen_stats = generate_all(model, tokenizer, passages, scfg, partial, progress=bar.update)
    bar.close()
    del model

    queries, passage_idx, sample_idx, counts = select_queries(generations, scfg.min_words)
    # Round trip over the whole corpus (not the sampled docs): the doc embeddings are the ones every
    # dense task caches, so this costs only the query encoding.
    start = time.perf_counter()
    encoder = Encoder.from_config(cfg.model)
    d_emb = torch.from_numpy(cached_encode(encoder, texts, "doc", cfg.eval.cache_dir or None, cfg.eval.batch_size))
    q_emb = torch.from_numpy(encoder.encode(queries, kind="query", batch_size=cfg.eval.batch_size,
                                            show_progress=False)) if queries else torch.empty(0, d_emb.shape[1])
    doc_source = torch.tensor([source[p] for p in passage_idx], dtype=torch.long)  # (Q,) corpus index
    if scfg.filter_top_k > 0:
        keep, ranks = round_trip_filter(q_emb, d_emb, doc_source, scfg.filter_top_k)
    else:
        keep, ranks = torch.ones(len(queries), dtype=torch.bool), torch.zeros(len(queries), dtype=torch.long)
    filter_seconds = time.perf_counter() - start

    source_ids = [doc_ids[s] for s in source]
    rows = pair_rows(queries, passages, passage_idx, source_ids, keep.numpy())
    write_pairs(out / "synthetic_pairs.jsonl", rows)
    write_pairs(out / "generated.jsonl", [
        {"query": q, "pos_id": source_ids[p], "chunk": p, "sample": j, "rank": int(r), "kept": bool(k)}
        for q, p, j, r, k in zip(queries, passage_idx, sample_idx, ranks.tolist(), keep.tolist(), strict=True)])
    stats = {"docs": len(set(source)), "chunks": len(passages), **counts, "kept": len(rows),
             "kept_fraction_of_deduped": len(rows) / max(1, len(queries)),
             "source_rank_median": float(ranks.float().median()) if len(queries) and scfg.filter_top_k else 0.0,
             "source_rank1_fraction": float((ranks == 1).float().mean()) if len(queries) else 0.0,
             **gen_stats, "filter_seconds": filter_seconds, "torch_threads": torch.get_num_threads()}
    tmp = out / ".stats.json.tmp"
    tmp.write_text(json.dumps(stats, indent=2) + "\n")
    tmp.replace(out / "stats.json")
    return stats


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
                                     add_help=False)
    parser.add_argument("-h", "--help", action="store_true", help="this help and every config key")
    try:
        parsed = parse_config_args(parser, argv)
        if parsed is None:
            return 0
        _, cfg = parsed
        stats = synthesize(cfg)
    except (ConfigError, DataError, FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    for key, value in stats.items():
        print(f"{key:40s} {value:.3f}" if isinstance(value, float) else f"{key:40s} {value}")
    print(f"wrote {Path(cfg.output_dir) / 'synthetic_pairs.jsonl'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
