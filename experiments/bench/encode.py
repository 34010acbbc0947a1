"""Corpus encoding: ragtune `Encoder.encode` vs sentence-transformers `encode`, and % of matmul peak.

    OMP_NUM_THREADS=1 python -m experiments.bench.encode [--n-docs 1000] [--batch-size 64]
        [--max-length 256] [--repeats 3] [--threads 1]

Both encode the first --n-docs SciFact documents (title + text) with the packaged MiniLM in fp32
at the same batch size and max length. Each trial is its own process (experiments/bench/common.py);
trials run ragtune, peer, matmul, ragtune, peer, matmul... and ratios are medians of per-repeat
ratios, because the machine is shared; `--repeats 0 --paired N` instead runs N trials that load
both libraries in one process and alternate them per batch (ABBA), whose median per-batch ratio is the least noisy.
Achieved GFLOP/s counts the useful (unpadded) FLOPs: per layer and real token, 2 * (4H^2 + 2HI)
for the projections and FFN plus 4 * T * H for QK^T and AV (embeddings, norms and softmax are
not counted), divided by wall time.
The peak is the best fp32 GEMM rate measured by torch in the same conditions.
"""

from __future__ import annotations

import argparse
import statistics
import time

from experiments.bench.common import interleave, mark_loaded, median_ratio, print_table, run_trial, summarize

MODEL = "minilm"


def flops_per_sequence(tokens: int, hidden: int, intermediate: int, layers: int) -> float:
    """Matmul FLOPs of one BERT forward over a sequence of `tokens` real tokens."""
    per_token = 2 * (4 * hidden * hidden + 2 * hidden * intermediate)  # QKV + out proj + FFN in/out
    attention = 4 * tokens * hidden  # QK^T and AV, per token (all heads together)
    return layers * tokens * (per_token + attention)


def _texts(n_docs: int) -> list[str]:
    from ragtune.data.beir import load_beir

    corpus = load_beir("scifact", "test", None).corpus
    return [doc.full_text() for doc in list(corpus.values())[:n_docs]]


def _useful_flops(tokenizer, texts: list[str], max_length: int, config) -> tuple[int, float]:
    lengths = [len(ids) for ids in tokenizer(texts, truncation=True, max_length=max_length)["input_ids"]]
    flops = sum(flops_per_sequence(t, config.hidden_size, config.intermediate_size, config.num_hidden_layers)
                for t in lengths)
    return sum(lengths), flops


def _result(seconds: float, n: int, tokens: int, flops: float, emb) -> dict:
    return {"seconds": seconds, "docs_per_s": n / seconds, "tokens": tokens, "gflops": flops / seconds / 1e9,
            "checksum": float(abs(emb).sum())}


def worker_ragtune(n_docs: int, batch_size: int, max_length: int) -> dict:
    from ragtune.config import ModelConfig
    from ragtune.models.encoder import Encoder

    texts = _texts(n_docs)
    encoder = Encoder.from_config(ModelConfig(name=MODEL, doc_max_length=max_length))
    tokens, flops = _useful_flops(encoder.tokenizer, texts, max_length, encoder.backbone.config)
    encoder.encode(texts[:8], batch_size=8, show_progress=False)  # warm-up: lazy inits, first-call costs
    mark_loaded()
    start = time.perf_counter()
    emb = encoder.encode(texts, kind="doc", batch_size=batch_size, show_progress=False)
    return _result(time.perf_counter() - start, len(texts), tokens, flops, emb)


def worker_peer(n_docs: int, batch_size: int, max_length: int) -> dict:
    from sentence_transformers import SentenceTransformer

    from ragtune.models.encoder import resolve_model_path

    texts = _texts(n_docs)
    model = SentenceTransformer(str(resolve_model_path(MODEL)), device="cpu")
    model.max_seq_length = max_length
    tokens, flops = _useful_flops(model.tokenizer, texts, max_length, model[0].auto_model.config)
    model.encode(texts[:8], batch_size=8)
    mark_loaded()
    start = time.perf_counter()
    emb = model.encode(texts, batch_size=batch_size, convert_to_numpy=True, normalize_embeddings=True)
    return _result(time.perf_counter() - start, len(texts), tokens, flops, emb)


def worker_paired(n_docs: int, batch_size: int, max_length: int) -> dict:
    """Both libraries in one process, alternating per batch (ABBA order): the median of per-batch
    time ratios cancels background load far better than separate trials do."""
    import statistics as stats

    from sentence_transformers import SentenceTransformer

    from ragtune.config import ModelConfig
    from ragtune.models.encoder import Encoder, resolve_model_path

    texts = _texts(n_docs)
    ours = Encoder.from_config(ModelConfig(name=MODEL, doc_max_length=max_length))
    peer = SentenceTransformer(str(resolve_model_path(MODEL)), device="cpu")
    peer.max_seq_length = max_length
    runs = {"ragtune": lambda t: ours.encode(t, batch_size=batch_size, show_progress=False),
            "peer": lambda t: peer.encode(t, batch_size=batch_size, normalize_embeddings=True)}
    for fn in runs.values():
        fn(texts[:8])  # warm-up
    ratios = []
    for i, start in enumerate(range(0, len(texts), batch_size)):
        chunk, secs = texts[start:start + batch_size], {}
        for name in (("ragtune", "peer") if i % 2 == 0 else ("peer", "ragtune")):
            t0 = time.perf_counter()
            runs[name](chunk)
            secs[name] = time.perf_counter() - t0
        ratios.append(secs["peer"] / secs["ragtune"])  # > 1: ragtune faster
    return {"median_speed_ratio": stats.median(ratios), "min_ratio": min(ratios), "max_ratio": max(ratios),
            "batches": len(ratios)}


def worker_matmul(seconds: float = 3.0) -> dict:
    """Best fp32 GEMM GFLOP/s over square and encoder-shaped (tokens x H x 4H) products."""
    import torch

    mark_loaded()
    best = {}
    for m, k, n in ((2048, 2048, 2048), (4096, 384, 1536), (4096, 1536, 384), (4096, 384, 384)):
        a, b = torch.randn(m, k), torch.randn(k, n)
        a @ b  # warm-up
        rates, deadline = [], time.perf_counter() + seconds / 4
        while time.perf_counter() < deadline or len(rates) < 3:
            start = time.perf_counter()
            a @ b
            rates.append(2 * m * k * n / (time.perf_counter() - start) / 1e9)
        best[f"{m}x{k}x{n}"] = max(rates)
    return {"peak_gflops": max(best.values()), **best}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n-docs", type=int, default=1000)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--max-length", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--paired", type=int, default=1, help="with --repeats 0: paired in-process runs (ratio only)")
    args = parser.parse_args()
    kw = {"n_docs": args.n_docs, "batch_size": args.batch_size, "max_length": args.max_length}
    mod = "experiments.bench.encode"
    if args.repeats == 0:  # ratio only: the paired runs
        for p in (run_trial(mod, "worker_paired", kw, args.threads) for _ in range(args.paired)):
            print(f"paired in one process, per-batch ABBA over {p['batches']} batches: ragtune speed / peer = "
                  f"{p['median_speed_ratio']:.3f}x (median; range {p['min_ratio']:.3f}-{p['max_ratio']:.3f})")
        return
    res = interleave({"ragtune": (mod, "worker_ragtune", kw), "sentence-transformers": (mod, "worker_peer", kw),
                      "matmul": (mod, "worker_matmul", {})}, args.repeats, args.threads)
    # Each encode trial is compared with the peak measured right after it (same background load).
    for name in ("ragtune", "sentence-transformers"):
        for r, peak in zip(res[name], res["matmul"], strict=True):
            r["pct_peak"] = 100 * r["gflops"] / peak["peak_gflops"]
    keys = ["docs_per_s", "gflops", "pct_peak", "seconds", "peak_mb", "loaded_mb", "activ_mb"]
    rows = summarize({k: v for k, v in res.items() if k != "matmul"}, keys)
    print(f"\nencode {args.n_docs} SciFact docs, MiniLM fp32, batch {args.batch_size}, max_length {args.max_length}, "
          f"{args.threads} thread(s), median of {args.repeats} interleaved repeats")
    print_table(rows, ["config"] + keys)
    peak = statistics.median(p["peak_gflops"] for p in res["matmul"])
    print(f"\nmatmul peak (median of repeats): {peak:.1f} GFLOP/s")
    print(f"ratio docs/s ragtune / sentence-transformers (median of per-repeat ratios): "
          f"{median_ratio(res['ragtune'], res['sentence-transformers'], 'docs_per_s'):.3f}x")
    checks = [abs(a["checksum"] - b["checksum"]) / b["checksum"]
              for a, b in zip(res["ragtune"], res["sentence-transformers"], strict=True)]
    print(f"embedding checksum relative difference: {max(checks):.2e} (same embeddings)")


if __name__ == "__main__":
    main()
