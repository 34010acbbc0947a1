"""Which query source lets a label-free teacher pay off? Distil the BM25 + MiniLM hybrid into the query tower.

    python -m experiments.adapt_query_source --queries sentences --out runs/query_source/sentences.json
    python -m experiments.adapt_query_source --queries runs/scifact_adapt_q1/synth/generated.jsonl \
        --out runs/query_source/smollm2.json
    python -m experiments.adapt_query_source --queries unlabelled_train --out runs/query_source/real.json

A development probe for `ragtune adapt` (issue #21), on SciFact's *train* claims, never its test:
each query source trains the same student the same number of steps, and the measure is nDCG@10 on
the 809 train claims (`dev`) with their qrels. The student is MiniLM's query
tower alone, against the frozen corpus embeddings (no re-index; a step costs one short-text forward
pass), so one source takes minutes. The teacher is the hybrid of ragtune/generation/pseudo_labels.py
(what `ragtune adapt` uses), in the student's units, over its own top `--teacher-top-k` documents,
and the loss is ragtune.losses.corpus_kl_distill: the same student and loss as `ragtune adapt` with
task=query_tower (configs/scifact_adapt_query_tower.py), here with a dev made of real claims.

Query sources: `sentences` (one seeded sentence per document, its source document left out of
both distributions, since it contains the sentence), a `ragtune synth` generated.jsonl (SmolLM2
claims, the source kept), or `unlabelled_train`: train claims as text alone, a query log without
judgments, the query distribution a perfect generator would write. That source is cross-fitted:
a student trains on one seeded half's texts and is measured on the other half, then the halves
swap, so every dev claim is scored by a student that never saw it and no qrels trains anything.
Writes `--out` (JSON: dev curve, teacher and zero-shot dev numbers, timings).
"""

from __future__ import annotations

import argparse
import copy
import json
import random
import time
from pathlib import Path

import numpy as np
import torch

from ragtune.config import BM25Settings, ModelConfig
from ragtune.data.beir import load_beir
from ragtune.eval.metrics import evaluate
from ragtune.generation.corpus_queries import sentence_queries
from ragtune.generation.pseudo_labels import HybridTeacher
from ragtune.losses import corpus_kl_distill
from ragtune.models.encoder import Encoder
from ragtune.retrieval.bm25 import BM25Index
from ragtune.retrieval.cache import cached_encode
from ragtune.retrieval.dense import dense_search
from ragtune.retrieval.first_stage import bm25_config
from ragtune.training.run_dir import atomic_write_text


def query_folds(train_qids: list[str], seed: int, folds: int = 2) -> list[list[str]]:
    """`folds` seeded, disjoint parts of the train claims, covering them all."""
    qids = sorted(train_qids)
    random.Random(seed).shuffle(qids)
    return [sorted(qids[i::folds]) for i in range(folds)]


def distil(encoder: Encoder, d_emb: np.ndarray, queries: list[str], cand: np.ndarray, target: np.ndarray,
           dev_texts: list[str], args) -> list[np.ndarray]:
    """Train a copy of `encoder`'s query tower for args.steps; (dev queries, H) embeddings at every evaluation."""
    docs = torch.from_numpy(d_emb)
    cand_t, target_t = torch.from_numpy(cand), torch.from_numpy(target.astype(np.float32))
    student = copy.deepcopy(encoder)
    student.train()
    optimizer = torch.optim.AdamW([p for p in student.parameters() if p.requires_grad], lr=args.lr,
                                  weight_decay=0.01)
    warmup = max(1, args.steps // 10)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: min(1.0, (s + 1) / warmup) * max(0.0, (args.steps - s) / args.steps))
    generator = torch.Generator().manual_seed(args.seed)
    snapshots, step = [], 0
    while step < args.steps:
        order = torch.randperm(len(queries), generator=generator)
        for b in range(0, len(queries) - args.batch + 1, args.batch):
            idx = order[b:b + args.batch]
            q = student(**student.tokenize([queries[i] for i in idx.tolist()], "query"))
            loss = corpus_kl_distill(q @ docs.T / args.temperature, cand_t[idx], target_t[idx])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            schedule.step()
            step += 1
            if step % args.eval_every == 0 or step == args.steps:
                snapshots.append(student.encode(dev_texts, kind="query", batch_size=128, show_progress=False))
                print(f"step {step}: loss {loss.item():.4f}", flush=True)
            if step == args.steps:
                break
    return snapshots


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--queries", required=True, help="sentences | unlabelled_train | a generated.jsonl")
    parser.add_argument("--out", required=True)
    parser.add_argument("--steps", type=int, default=80)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--lr", type=float, default=3e-5)
    parser.add_argument("--teacher-top-k", type=int, default=100)
    parser.add_argument("--weight", type=float, default=0.5, help="the hybrid's dense share (ragtune's default)")
    parser.add_argument("--depth", type=int, default=100, help="the hybrid's min-max depth")
    parser.add_argument("--temperature", type=float, default=0.05)
    parser.add_argument("--eval-every", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--log-size", type=int, default=0,
                        help="unlabelled_train: train on a seeded subset of this many of each half's claims")
    parser.add_argument("--exclude-source", action="store_true",
                        help="leave a generated query's source document out of its list (sentences always do)")
    args = parser.parse_args()
    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    start = time.perf_counter()

    train = load_beir("scifact", "train")
    corpus, doc_ids = train.corpus, list(train.corpus)
    position = {d: i for i, d in enumerate(doc_ids)}
    encoder = Encoder.from_config(ModelConfig())
    d_emb = np.ascontiguousarray(cached_encode(encoder, [corpus[d].full_text() for d in doc_ids], "doc"))
    index = BM25Index.from_corpus(corpus, bm25_config(BM25Settings()))

    def teacher_of(texts: list[str]) -> HybridTeacher:
        q = encoder.encode(texts, kind="query", batch_size=128, show_progress=False)
        bm25 = np.stack([index.score_all(t) for t in texts]).astype(np.float32)
        return HybridTeacher.from_scores(bm25, q @ d_emb.T, args.weight, args.depth)

    def search(q_emb: np.ndarray, qids: list[str]) -> dict:
        return dense_search(q_emb, d_emb, qids, doc_ids, top_k=100)

    all_qids = sorted(train.qrels)
    if args.queries == "unlabelled_train":
        # the query log: one fold's claims as text alone train, the other fold is dev, then swap
        folds = query_folds(all_qids, args.seed)
        logs = [folds[1 - i] if args.log_size <= 0 else
                sorted(random.Random(args.seed).sample(folds[1 - i], min(args.log_size, len(folds[1 - i]))))
                for i in range(2)]
        plans = [([train.queries[q] for q in logs[i]], None, folds[i]) for i in range(2)]
    else:
        if args.queries == "sentences":
            rows = sentence_queries(corpus, 1, 6, args.seed)
        else:
            rows = [json.loads(line) for line in Path(args.queries).read_text().splitlines() if line.strip()]
        # a sentence is in its source document: the source is left out of that query's lists
        exclude = np.array([position[r["pos_id"]] for r in rows]) \
            if args.queries == "sentences" or args.exclude_source else None
        plans = [([r["query"] for r in rows], exclude, all_qids)]

    dev_teacher = teacher_of([train.queries[q] for q in all_qids]).hybrid
    teacher_run = {q: {doc_ids[j]: float(dev_teacher[i, j]) for j in np.argsort(-dev_teacher[i])[:100]}
                   for i, q in enumerate(all_qids)}
    del dev_teacher
    zero_shot = search(encoder.encode([train.queries[q] for q in all_qids], kind="query", batch_size=128,
                                      show_progress=False), all_qids)
    runs_per_eval: list[dict] = []
    label_seconds = train_seconds = 0.0
    for queries, exclude, dev_qids in plans:
        label_start = time.perf_counter()
        cand, target = teacher_of(queries).top_lists(args.teacher_top_k, args.weight, args.temperature, exclude)
        train_start = time.perf_counter()
        label_seconds += train_start - label_start
        snapshots = distil(encoder, d_emb, queries, cand, target, [train.queries[q] for q in dev_qids], args)
        train_seconds += time.perf_counter() - train_start
        for k, q_emb in enumerate(snapshots):  # every fold's dev queries merged into one run per evaluation
            if len(runs_per_eval) <= k:
                runs_per_eval.append({})
            runs_per_eval[k].update(search(q_emb, dev_qids))
    steps = [min(args.steps, args.eval_every * (k + 1)) for k in range(len(runs_per_eval))]
    curve = [{"step": 0, **evaluate(zero_shot, train.qrels)}]
    curve += [{"step": s, **evaluate(run, train.qrels)} for s, run in zip(steps, runs_per_eval, strict=True)]
    teacher_dev = evaluate(teacher_run, train.qrels)
    print(f"{args.queries}: dev nDCG@10 zero-shot {curve[0]['ndcg@10']:.4f}, teacher {teacher_dev['ndcg@10']:.4f}, "
          + ", ".join(f"step {c['step']} {c['ndcg@10']:.4f}" for c in curve[1:]))
    result = {"queries_source": args.queries, "queries": sum(len(p[0]) for p in plans), "folds": len(plans),
              "settings": vars(args), "dev_queries": len(all_qids), "teacher_dev": teacher_dev, "curve": curve,
              "label_seconds": label_seconds, "train_seconds": train_seconds,
              "seconds": time.perf_counter() - start}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(Path(args.out), json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
