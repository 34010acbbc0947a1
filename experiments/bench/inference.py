"""CPU inference backends side by side: ragtune torch / torch_int8 / onnx / onnx_int8 against
sentence-transformers' torch / onnx / onnx-qint8 / openvino, on the same SciFact docs, batch and max length.

    bash scripts/setup_onnx_peer.sh   # sentence-transformers' ONNX/OpenVINO backends in their own venv
    python -m experiments.bench.inference [--n-docs 1000] [--batch-size 16] [--max-length 256]
        [--threads 2] [--repeats 2] [--quality] [--rerank-queries 20] [--rerank-batch-size 16]
        [--out runs/bench/inference]

- throughput: every backend encodes the first --n-docs SciFact test documents, each trial its own
  process, all backends interleaved per repeat (the machine is shared); docs/s is the median over
  repeats, ratios are medians of per-repeat ratios. GFLOP/s counts the useful (unpadded) matmul FLOPs
  (experiments/bench/encode.py) and % peak divides by the best fp32 GEMM rate of a trial run beside them.
- --quality: each backend embeds the whole corpus and the test queries once; nDCG@10 of exact search
  on those embeddings, and its difference to ragtune torch fp32 (the number every other table uses).
- --rerank-queries N: the saved reranker (--reranker) scores the zero-shot MiniLM top 50 of the first
  N test queries, one call per query as reranking does, on each ragtune backend at --rerank-batch-size
  (and torch_int8_smooth, calibrated on unlabelled corpus pairs as `ragtune run` does; not timed),
  and on torch fp32 with the top 50 in one batch (the path before per-core batches): pairs/s. The
  reranked nDCG of a backend over all queries is a `ragtune run --task=rerank_eval --eval.backend=...`
  (README, Inference).
Exports (ONNX files) are written before the timed part and not counted; so is sentence-transformers'.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import time
from pathlib import Path

from experiments.bench.common import REPO, mark_loaded, median_ratio, print_table, run_trial

PEER_PYTHON = REPO / ".venv-onnx-peer" / "bin" / "python"
RAGTUNE_BACKENDS = ("torch", "torch_int8", "onnx", "onnx_int8")
RERANK_BACKENDS = (*RAGTUNE_BACKENDS, "torch_int8_smooth")  # the calibrated one runs cross-encoders only
ST_BACKENDS = ("torch", "onnx", "onnx_qint8", "onnx_qint8_vnni", "openvino")
MOD, PEER = "experiments.bench.inference", "experiments.bench.st_backends_peer"


def _encoder(backend: str, max_length: int, cache_dir: str):
    from ragtune.config import ModelConfig
    from ragtune.inference.backends import for_inference
    from ragtune.models.encoder import Encoder

    return for_inference(Encoder.from_config(ModelConfig(name="minilm", doc_max_length=max_length)), backend,
                         cache_dir)


def worker_throughput(backend: str, texts_file: str, n_docs: int, batch_size: int, max_length: int,
                      cache_dir: str) -> dict:
    texts = json.loads(Path(texts_file).read_text())["docs"][:n_docs]
    encoder = _encoder(backend, max_length, cache_dir)
    encoder.encode(texts[:batch_size], "doc", batch_size, show_progress=False)  # warm-up (and export, if any)
    mark_loaded()
    start = time.perf_counter()
    encoder.encode(texts, "doc", batch_size, show_progress=False)
    seconds = time.perf_counter() - start
    return {"seconds": seconds, "docs_per_s": len(texts) / seconds}


def worker_embed_all(backend: str, texts_file: str, batch_size: int, max_length: int, cache_dir: str,
                     out: str) -> dict:
    import numpy as np

    data = json.loads(Path(texts_file).read_text())
    encoder = _encoder(backend, max_length, cache_dir)
    encoder.encode(data["docs"][:8], "doc", 8, show_progress=False)
    mark_loaded()
    start = time.perf_counter()
    docs = encoder.encode(data["docs"], "doc", batch_size, show_progress=False)
    seconds = time.perf_counter() - start
    queries = encoder.encode(data["queries"], "query", batch_size, show_progress=False)
    np.savez(out, docs=docs, queries=queries)
    return {"corpus_seconds": seconds, "corpus_docs_per_s": len(data["docs"]) / seconds}


def _smooth_settings(model, batch_size: int):
    """torch_int8_smooth's calibration as `ragtune run` sets it up: unlabelled SciFact corpus pairs, the
    default alphas and calibration size, the default seed."""
    from ragtune.config import ExperimentConfig
    from ragtune.data.beir import load_corpus_only
    from ragtune.inference.backends import SmoothSettings
    from ragtune.inference.calibration import CALIBRATION_PER_QUERY, corpus_pairs

    cfg = ExperimentConfig()
    return SmoothSettings(
        pairs=lambda: corpus_pairs(load_corpus_only("scifact").corpus, cfg.rerank.int8_calibration_queries,
                                   CALIBRATION_PER_QUERY, cfg.seed, model.doc_template),
        alphas=cfg.rerank.int8_smooth_alphas, batch_size=batch_size)


def worker_rerank(backend: str, pairs_file: str, batch_size: int, reranker: str, cache_dir: str) -> dict:
    """Scores query by query, as `ragtune.rerank.rerank_run` does (one `score` call per query's top 50)."""
    from ragtune.inference.backends import for_inference
    from ragtune.models.cross_encoder import CrossEncoder

    pairs = json.loads(Path(pairs_file).read_text())
    source = CrossEncoder.from_pretrained(reranker)
    model = for_inference(source, backend, cache_dir, smooth=_smooth_settings(source, batch_size))
    first = pairs["sizes"][0]
    # warm-up (and export or calibration, if any: not timed)
    model.score(pairs["queries"][:first], pairs["docs"][:first], batch_size)
    mark_loaded()
    scores, start, end = [], time.perf_counter(), 0
    for size in pairs["sizes"]:
        end, begin = end + size, end
        scores.extend(model.score(pairs["queries"][begin:end], pairs["docs"][begin:end], batch_size).tolist())
    seconds = time.perf_counter() - start
    return {"seconds": seconds, "pairs_per_s": len(scores) / seconds, "scores": scores}


def write_texts(path: Path) -> tuple[list[str], list[str], dict]:
    from ragtune.data.beir import load_beir

    test = load_beir("scifact", "test", None)
    doc_ids, qids = list(test.corpus), list(test.queries)
    data = {"docs": [test.corpus[d].full_text() for d in doc_ids], "queries": [test.queries[q] for q in qids]}
    path.write_text(json.dumps(data))
    return doc_ids, qids, test.qrels


def useful_gflop(texts: list[str], max_length: int) -> float:
    from transformers import AutoConfig, AutoTokenizer

    from experiments.bench.encode import flops_per_sequence
    from ragtune.models.encoder import resolve_model_path

    path = resolve_model_path("minilm")
    tok, cfg = AutoTokenizer.from_pretrained(path), AutoConfig.from_pretrained(path)
    lengths = [len(ids) for ids in tok(texts, truncation=True, max_length=max_length)["input_ids"]]
    return sum(flops_per_sequence(t, cfg.hidden_size, cfg.intermediate_size, cfg.num_hidden_layers)
               for t in lengths) / 1e9


def configs(args, texts_file: Path, st_dir: Path, cache_dir: Path, fn_ragtune: str, fn_peer: str,
            extra: dict) -> dict[str, tuple]:
    common = {"texts_file": str(texts_file), "batch_size": args.batch_size, "max_length": args.max_length}
    out = {f"ragtune {b}": (MOD, fn_ragtune, {"backend": b, "cache_dir": str(cache_dir), **common,
                                              **extra.get(f"ragtune {b}", extra.get("*", {}))})
           for b in RAGTUNE_BACKENDS}
    if PEER_PYTHON.is_file():
        out.update({f"sentence-transformers {b}": (PEER, fn_peer, {"model_dir": str(st_dir), "backend": b, **common,
                                                                   **extra.get(f"sentence-transformers {b}",
                                                                               extra.get("*", {}))})
                    for b in ST_BACKENDS})
    return out


def run(name: str, spec: tuple, threads: int) -> dict:
    module, fn, kwargs = spec
    python = str(PEER_PYTHON) if module == PEER else None
    return run_trial(module, fn, kwargs, threads, timeout=4 * 3600, **({"python": python} if python else {}))


def throughput(args, texts_file: Path, st_dir: Path, cache_dir: Path) -> list[dict]:
    specs = configs(args, texts_file, st_dir, cache_dir, "worker_throughput", "throughput",
                    {"*": {"n_docs": args.n_docs}})
    results: dict[str, list[dict]] = {name: [] for name in specs}
    peaks = []
    for r in range(args.repeats):
        for name, spec in specs.items():
            results[name].append(run(name, spec, args.threads))
            print(f"  repeat {r + 1}/{args.repeats} {name}: {results[name][-1]['docs_per_s']:.2f} docs/s", flush=True)
        peaks.append(run_trial("experiments.bench.encode", "worker_matmul", {}, args.threads)["peak_gflops"])
    texts = json.loads(texts_file.read_text())["docs"][:args.n_docs]
    gflop = useful_gflop(texts, args.max_length)
    peak = statistics.median(peaks)
    fastest_peer = max((n for n in results if n.startswith("sentence")), default=None,
                       key=lambda n: statistics.median(x["docs_per_s"] for x in results[n]))
    rows = []
    for name, runs in results.items():
        dps = statistics.median(x["docs_per_s"] for x in runs)
        row = {"config": name, "docs_per_s": dps, "gflops": gflop * dps / len(texts),
               "pct_fp32_peak": 100 * gflop * dps / len(texts) / peak,
               "vs ragtune torch": median_ratio(runs, results["ragtune torch"], "docs_per_s"),
               "peak_mb": statistics.median(x["peak_mb"] for x in runs)}
        if fastest_peer:
            row["vs fastest ST"] = median_ratio(runs, results[fastest_peer], "docs_per_s")
        rows.append(row)
    print(f"\nencode {len(texts)} SciFact docs, MiniLM, batch {args.batch_size}, max_length {args.max_length}, "
          f"{args.threads} thread(s), median of {args.repeats} interleaved repeats; fp32 GEMM peak {peak:.1f} GFLOP/s; "
          f"fastest sentence-transformers backend: {fastest_peer}")
    print_table(rows, ["config", "docs_per_s", "vs ragtune torch", "vs fastest ST", "gflops", "pct_fp32_peak",
                       "peak_mb"])
    return rows


def quality(args, texts_file: Path, st_dir: Path, cache_dir: Path, doc_ids, qids, qrels, out: Path) -> list[dict]:
    import numpy as np

    from ragtune.eval.metrics import evaluate
    from ragtune.retrieval.dense import dense_search

    specs = configs(args, texts_file, st_dir, cache_dir, "worker_embed_all", "embed_all",
                    {name: {"out": str(out / f"emb_{name.replace(' ', '_')}.npz")}
                     for name in [f"ragtune {b}" for b in RAGTUNE_BACKENDS] +
                     [f"sentence-transformers {b}" for b in ST_BACKENDS]})
    rows = []
    for name, spec in specs.items():
        res = run(name, spec, args.threads)
        emb = np.load(spec[2]["out"])
        metrics = evaluate(dense_search(emb["queries"], emb["docs"], qids, doc_ids, top_k=100), qrels, (10, 100))
        rows.append({"config": name, "ndcg@10": metrics["ndcg@10"], "recall@100": metrics["recall@100"],
                     "corpus_docs_per_s": res["corpus_docs_per_s"]})
        print(f"  {name}: nDCG@10 {metrics['ndcg@10']:.4f}, corpus {res['corpus_docs_per_s']:.2f} docs/s", flush=True)
    ref = rows[0]["ndcg@10"]  # ragtune torch fp32
    for row in rows:
        row["delta_vs_ragtune_fp32"] = row["ndcg@10"] - ref
    print(f"\nSciFact test ({len(qids)} queries, {len(doc_ids)} docs), exact search on each backend's embeddings")
    print_table(rows, ["config", "ndcg@10", "delta_vs_ragtune_fp32", "recall@100", "corpus_docs_per_s"])
    return rows


def rerank(args, texts_file: Path, cache_dir: Path, doc_ids, qids, out: Path) -> list[dict]:
    import numpy as np

    from ragtune.data.beir import load_beir
    from ragtune.models.cross_encoder import CrossEncoder, format_doc
    from ragtune.retrieval.dense import dense_search

    emb_file = out / "emb_ragtune_torch.npz"
    if not emb_file.is_file():  # --quality writes it; else embed once here (the candidate lists), not timed
        print(run_trial(MOD, "worker_embed_all", {"backend": "torch", "texts_file": str(texts_file),
                                                  "batch_size": args.batch_size, "max_length": args.max_length,
                                                  "cache_dir": str(cache_dir), "out": str(emb_file)},
                        args.threads, timeout=4 * 3600))
    emb = np.load(emb_file)
    test = load_beir("scifact", "test", None)
    template = CrossEncoder.from_pretrained(args.reranker).doc_template
    sub = qids[:args.rerank_queries]
    run_ = dense_search(emb["queries"][:len(sub)], emb["docs"], sub, doc_ids, top_k=50)
    pairs = {"queries": [test.queries[q] for q in sub for _ in run_[q]],
             "docs": [format_doc(test.corpus[d], template) for q in sub for d in run_[q]],
             "sizes": [len(run_[q]) for q in sub]}
    pairs_file = out / "rerank_pairs.json"
    pairs_file.write_text(json.dumps(pairs))
    # The baseline is torch fp32 with the whole top 50 in one batch: one batch per call runs in the calling
    # thread with all intra-op threads, the path every score took before per-core batches.
    trials = {"torch, batch 50 (before)": ("torch", 50)}
    trials.update({f"{b}, batch {args.rerank_batch_size}": (b, args.rerank_batch_size) for b in RERANK_BACKENDS})
    results: dict[str, list[dict]] = {name: [] for name in trials}
    for r in range(args.repeats):
        for name, (backend, batch_size) in trials.items():
            results[name].append(run_trial(MOD, "worker_rerank", {"backend": backend, "pairs_file": str(pairs_file),
                                                                  "batch_size": batch_size,
                                                                  "reranker": args.reranker,
                                                                  "cache_dir": str(cache_dir)}, args.threads,
                                           timeout=4 * 3600))
            print(f"  repeat {r + 1}/{args.repeats} rerank {name}: {results[name][-1]['pairs_per_s']:.2f} pairs/s",
                  flush=True)
    base = results["torch, batch 50 (before)"]
    ref = np.array(base[0]["scores"])
    rows = [{"config": f"ragtune {name}", "pairs_per_s": statistics.median(x["pairs_per_s"] for x in runs),
             "vs before": median_ratio(runs, base, "pairs_per_s"),
             "max_abs_score_diff": float(np.abs(np.array(runs[0]["scores"]) - ref).max()),
             "mean_abs_score_diff": float(np.abs(np.array(runs[0]["scores"]) - ref).mean())}
            for name, runs in results.items()]
    print(f"\nrerank {len(pairs['queries'])} pairs ({len(sub)} queries x top 50, one call per query), "
          f"{args.threads} thread(s), median of {args.repeats} interleaved repeats")
    print_table(rows, ["config", "pairs_per_s", "vs before", "max_abs_score_diff", "mean_abs_score_diff"])
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n-docs", type=int, default=1000)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--max-length", type=int, default=256)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--quality", action="store_true", help="nDCG@10 of every backend on SciFact test")
    parser.add_argument("--no-throughput", action="store_true")
    parser.add_argument("--rerank-queries", type=int, default=0)
    parser.add_argument("--rerank-batch-size", type=int, default=16)
    parser.add_argument("--reranker", default="runs/scifact_reranker/model")
    parser.add_argument("--out", default="runs/bench/inference")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    texts_file, cache_dir, st_dir = out / "texts.json", out / "cache", out / "st_model"
    doc_ids, qids, qrels = write_texts(texts_file)
    if PEER_PYTHON.is_file() and not (st_dir / "onnx" / "model_qint8_avx512_vnni.onnx").is_file():
        from ragtune.models.encoder import resolve_model_path

        shutil.rmtree(st_dir, ignore_errors=True)
        shutil.copytree(resolve_model_path("minilm"), st_dir)  # the peer writes its exports beside the weights
        print("sentence-transformers exports:", run_trial(PEER, "prepare", {"model_dir": str(st_dir)}, args.threads,
                                                          python=str(PEER_PYTHON)))
    elif not PEER_PYTHON.is_file():
        print(f"no {PEER_PYTHON}: run scripts/setup_onnx_peer.sh for the sentence-transformers rows")
    report = {"args": vars(args)}
    if not args.no_throughput:
        report["throughput"] = throughput(args, texts_file, st_dir, cache_dir)
    if args.quality:
        report["quality"] = quality(args, texts_file, st_dir, cache_dir, doc_ids, qids, qrels, out)
    if args.rerank_queries:
        report["rerank"] = rerank(args, texts_file, cache_dir, doc_ids, qids, out)
    (out / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nreport: {out / 'report.json'}")


if __name__ == "__main__":
    main()
