"""Late interaction: ragtune vs PyLate on the same batches, in one run.

    bash scripts/setup_pylate.sh      # PyLate's own venv: it pins sentence-transformers / transformers
    python -m experiments.bench.late_interaction [--steps 12] [--repeats 2] [--threads 2]
        [--quality] [--ragtune-run runs/scifact_late_interaction]

Both sides: the packaged all-MiniLM-L6-v2, a 384 -> 128 projection without bias, L2-normalised
token vectors, queries padded to 32 tokens with [MASK] (not attended to), documents cut at 256
tokens with punctuation dropped, no marker tokens, in-batch InfoNCE over MaxSim at temperature 1,
AdamW (lr 3e-5, weight decay 0.01, 10% linear warm-up, clip 1.0), fp32 on the CPU. The batches are
the ones configs/scifact_late_interaction.py trains on, written once by ragtune's sampler and
collator (32 queries, their positive and one BM25 hard negative) and fed to both in that order.

- Throughput: ragtune's training loop (ragtune/training/loop.py, `train.select=last`: no dev
  evaluation) against PyLate's documented path (ColBERT + Contrastive + ColBERTCollator through
  sentence-transformers' Trainer), each in a fresh process, interleaved. pairs/s: ragtune's is
  steps x batch over the wall seconds of its whole `train()` call (first step and the final
  checkpoint included); PyLate's leaves its first step out (timed from the second step's start to
  the last step's end), which favours the peer. Peak RSS (VmHWM) of each process.
- --quality: PyLate trains on all the batches of the full budget (the same schedule), is saved at
  the step ragtune's dev selection chose in the run of the config, encodes SciFact test itself at
  that step, and ragtune's exact MaxSim search scores its vectors; the ragtune row is that run's.
  PyLate also loads ragtune's exported folder and encodes with it: the largest difference from
  ragtune's own vectors is printed (the export's compatibility check).

Known differences: ragtune leaves documents the qrels call relevant to a query out of its
in-batch negatives (data.mask_known_positives); PyLate has no such mask.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path
from statistics import median

from experiments.bench.common import REPO, mark_loaded, median_ratio, print_table, run_trial

CONFIG = REPO / "configs" / "scifact_late_interaction.py"
PEER_PYTHON = REPO / ".venv-pylate" / "bin" / "python"
OUT = REPO / "runs" / "bench" / "late_interaction"


def _config():
    from ragtune.config import load_config_file

    return load_config_file(CONFIG)


def write_batches(path: Path) -> int:
    """Every batch of the config's budget, in training order, as texts: {"q", "pos", "neg"} per line."""
    from accelerate import Accelerator

    from ragtune.models.encoder import Encoder
    from ragtune.tasks.biencoder import pair_training
    from ragtune.training.loop import set_loader_epoch, training_length

    cfg = _config()
    pairs = pair_training(cfg, Accelerator(cpu=True), Encoder.from_config(cfg.model), lambda texts, kind: texts)
    total, _ = training_length(cfg.train, len(pairs.loader))
    lines, epoch = [], 0
    while len(lines) < total:
        set_loader_epoch(pairs.loader, epoch)
        for batch in pairs.loader:
            docs = batch["d"]  # group layout: [pos_0, neg_0, pos_1, neg_1, ...]
            lines.append(json.dumps({"q": batch["q"], "pos": docs[0::2], "neg": docs[1::2]}))
            if len(lines) == total:
                break
        epoch += 1
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
    return total


def worker_ragtune(batches_file: str, steps: int, out: str) -> dict:
    """ragtune's training loop over the first `steps` batches of the file."""

    from accelerate import Accelerator

    from ragtune.config import apply_overrides
    from ragtune.losses import compute_loss
    from ragtune.models.late_interaction import LateInteraction
    from ragtune.tasks import Task
    from ragtune.training.loop import train
    from ragtune.training.tracking import MetricsLog

    cfg = apply_overrides(_config(), {"output_dir": out, "train.select": "last", "train.max_steps": str(steps),
                                      "train.save_every": str(10 ** 6), "log.wandb": "disabled"})
    model = LateInteraction.from_config(cfg.model, cfg.late, cfg.seed, temperature=cfg.loss.temperature)
    batches = [json.loads(line) for line in Path(batches_file).read_text().splitlines()][:steps]

    def collate(b):  # what GroupCollator hands the step: tokenized queries and [pos, neg] groups
        docs = [d for pair in zip(b["pos"], b["neg"], strict=True) for d in pair]
        return {"q": model.tokenize(b["q"], "query"), "d": model.tokenize(docs, "doc")}

    loader = _Batches(batches, collate)

    def step_fn(m, batch):
        q, d = m(**batch["q"], kind="query"), m(**batch["d"], kind="doc")
        return compute_loss(cfg.loss, group_size=2, q_emb=q, d_emb=d, temperature=cfg.loss.temperature), {}

    parts = Task(model=model, evaluate=lambda m, s: {}, train_loader=loader, step_fn=step_fn)
    mark_loaded()
    accelerator = Accelerator(cpu=True)
    start = time.perf_counter()
    train(cfg, parts, accelerator, MetricsLog(accelerator, out))
    seconds = time.perf_counter() - start
    return {"steps": steps, "train_seconds": seconds, "pairs_per_s": steps * len(batches[0]["q"]) / seconds}


class _Batches:
    """A loader over prepared batches, collated as they are drawn (as a DataLoader with a collate_fn)."""

    def __init__(self, batches: list, collate):
        self.batches, self.collate = batches, collate

    def __len__(self) -> int:
        return len(self.batches)

    def __iter__(self):
        return (self.collate(b) for b in self.batches)


def _peer(fn: str, kwargs: dict, threads: int) -> dict:
    return run_trial("experiments.bench.pylate_peer", fn, kwargs, threads, timeout=4 * 3600, python=str(PEER_PYTHON))


def _peer_train_kwargs(batches: Path, steps: int, out: Path) -> dict:
    from ragtune.models.encoder import resolve_model_path

    cfg = _config()
    return {"batches_file": str(batches), "model_path": str(resolve_model_path(cfg.model.name)), "out": str(out),
            "steps": steps, "lr": cfg.optim.lr, "warmup_ratio": cfg.optim.warmup_ratio,
            "query_length": cfg.late.query_length, "document_length": cfg.model.doc_max_length,
            "dim": cfg.late.dim, "temperature": cfg.loss.temperature, "seed": cfg.seed}


def throughput(batches: Path, steps: int, repeats: int, threads: int) -> list[dict]:
    rows = {"ragtune": [], "pylate": []}
    for r in range(repeats):
        rows["ragtune"].append(run_trial("experiments.bench.late_interaction", "worker_ragtune",
                                         {"batches_file": str(batches), "steps": steps,
                                          "out": str(OUT / f"ragtune-{r}")}, threads))
        rows["pylate"].append(_peer("train", _peer_train_kwargs(batches, steps, OUT / f"pylate-{r}"), threads))
        for name in rows:
            print(f"  repeat {r + 1}/{repeats} {name}: {rows[name][-1]}", flush=True)
    table = [{"side": name, "pairs/s": median(r["pairs_per_s"] for r in runs),
              "peak MB": median(r["peak_mb"] for r in runs), "activations MB": median(r["activ_mb"] for r in runs),
              "trials": runs} for name, runs in rows.items()]
    table[0]["ratio vs pylate"] = median_ratio(rows["ragtune"], rows["pylate"], "pairs_per_s")
    return table


def _score(vectors_prefix: str, q_prefix: str, test, cfg) -> dict:
    import numpy as np
    import torch

    from ragtune.eval.metrics import evaluate
    from ragtune.retrieval.late import TokenStore, late_search

    store = TokenStore(np.load(f"{vectors_prefix}.vectors.npy", mmap_mode="r"),
                       np.load(f"{vectors_prefix}.offsets.npy"))
    qv, qo = np.load(f"{q_prefix}.vectors.npy"), np.load(f"{q_prefix}.offsets.npy")
    length = int(np.diff(qo).max())
    queries = torch.zeros(len(qo) - 1, length, qv.shape[1])
    for i in range(len(qo) - 1):
        queries[i, :qo[i + 1] - qo[i]] = torch.from_numpy(qv[qo[i]:qo[i + 1]].astype(np.float32))
    run = late_search(queries, store, list(test.queries), list(test.corpus), 100, cfg.late.search_batch_elements)
    return evaluate(run, test.qrels, cfg.eval.k_values) | {"bytes_per_doc": store.bytes_per_doc()}


def quality(batches: Path, steps: int, threads: int, ragtune_run: Path) -> list[dict]:
    """PyLate trained on the full budget and stopped where ragtune's dev selection stopped (its best
    dev step, saved on the way), scored on test; ragtune's row is its run's."""
    import numpy as np

    from ragtune.data.folds import load_split
    from ragtune.models.late_interaction import LateInteraction

    cfg = _config()
    results = json.loads((ragtune_run / "results.json").read_text())
    timings = json.loads((ragtune_run / "timings.json").read_text())
    best = int(timings["best_step"])
    print(f"  ragtune run {ragtune_run}: best dev step {best} of {timings['steps']}: PyLate is scored at that step")
    test = load_split(cfg, "eval")
    texts = OUT / "test_docs.json"
    texts.write_text(json.dumps([test.corpus[d].full_text() for d in test.corpus]))
    queries = OUT / "test_queries.json"
    queries.write_text(json.dumps([test.queries[q] for q in test.queries]))
    trained = _peer("train", {**_peer_train_kwargs(batches, steps, OUT / "pylate-full"), "save_at": [best]}, threads)
    print(f"  pylate full budget: {trained}", flush=True)
    lengths = {"query_length": cfg.late.query_length, "document_length": cfg.model.doc_max_length}
    model_dir = str(OUT / "pylate-full" / (f"model-step{best}" if best < steps else "model"))
    docs_info = _peer("encode", {"model_path": model_dir, "texts_file": str(texts), "out_prefix": str(OUT / "pl_docs"),
                                 "is_query": False, **lengths}, threads)
    _peer("encode", {"model_path": model_dir, "texts_file": str(queries), "out_prefix": str(OUT / "pl_queries"),
                     "is_query": True, **lengths}, threads)
    pylate = _score(str(OUT / "pl_docs"), str(OUT / "pl_queries"), test, cfg)

    rows = [{"side": f"ragtune (step {best})", "ndcg@10": results["final/test/ndcg@10"],
             "recall@100": results["final/test/recall@100"],
             "bytes/doc": timings.get("test_store_bytes_per_doc")},
            {"side": f"pylate (step {best})", "ndcg@10": pylate["ndcg@10"], "recall@100": pylate["recall@100"],
             "bytes/doc": pylate["bytes_per_doc"], "docs/s encode": docs_info["texts_per_s"]}]

    # The export read by PyLate: its vectors against ragtune's own, on the first 64 test documents.
    sample = OUT / "parity_docs.json"
    sample.write_text(json.dumps(json.loads(texts.read_text())[:64]))
    _peer("encode", {"model_path": str(ragtune_run / "model"), "texts_file": str(sample),
                     "out_prefix": str(OUT / "parity"), "is_query": False, **lengths}, threads)
    ours = LateInteraction.load(ragtune_run / "model")
    vectors, offsets = ours.encode(json.loads(sample.read_text()), "doc", show_progress=False)
    theirs, their_offsets = np.load(OUT / "parity.vectors.npy"), np.load(OUT / "parity.offsets.npy")
    same_tokens = bool(np.array_equal(offsets, their_offsets))
    diff = float(np.abs(vectors.astype(np.float32) - theirs.astype(np.float32)).max()) if same_tokens else math.nan
    print(f"  PyLate reading ragtune's export: same tokens kept {same_tokens}, max |vector difference| {diff:.2e}")
    rows[0]["pylate reads export: max diff"] = diff
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--quality", action="store_true")
    parser.add_argument("--no-throughput", action="store_true", help="the quality part only")
    parser.add_argument("--ragtune-run", type=Path, default=REPO / "runs" / "scifact_late_interaction")
    args = parser.parse_args()
    if not PEER_PYTHON.is_file():
        sys.exit(f"{PEER_PYTHON} is missing: run `bash scripts/setup_pylate.sh` first")
    batches = OUT / "batches.jsonl"
    total = write_batches(batches)
    print(f"{total} batches of the config's budget written to {batches}")
    report_file = OUT / ("report_quality.json" if args.no_throughput else "report.json")
    report = {"steps": args.steps, "threads": args.threads}
    if not args.no_throughput:
        print(f"\nthroughput over {args.steps} steps, {args.threads} threads, median of {args.repeats}:")
        report["throughput"] = throughput(batches, args.steps, args.repeats, args.threads)
        print_table(report["throughput"], ["side", "pairs/s", "ratio vs pylate", "peak MB", "activations MB"])
    if args.quality:
        print(f"\nSciFact test after the full budget ({total} steps):")
        report["quality"] = quality(batches, total, args.threads, args.ragtune_run)
        print_table(report["quality"], ["side", "ndcg@10", "recall@100", "bytes/doc", "docs/s encode",
                                        "pylate reads export: max diff"])
    report_file.write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nreport: {report_file}")


if __name__ == "__main__":
    main()
