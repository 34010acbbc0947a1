"""Where plain int8 loses a reranker's fidelity: outlier input channels, and each Linear's share.

    python -m experiments.bench.int8_channels runs/scifact_reranker/model [--queries 20] [--depth 20]

Pairs: every 7th SciFact *train* claim (never test) x its BM25 top --depth. Prints, for each Linear
of the transformer blocks, the largest |input| of any channel against the median channel's largest
(the outliers dynamic int8's one scale per batch must cover), then the mean |int8 - fp32| logit with
every Linear int8 and with each one alone kept in fp32 (how much of the error it carries).
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from ragtune.data.beir import load_beir
from ragtune.inference.backends import CPU, quantize_linear_int8
from ragtune.inference.smooth_quant import input_channel_absmax
from ragtune.models.cross_encoder import CrossEncoder, format_doc
from ragtune.retrieval.bm25 import BM25Index


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("reranker")
    parser.add_argument("--queries", type=int, default=20)
    parser.add_argument("--depth", type=int, default=20)
    args = parser.parse_args()
    train = load_beir("scifact", "train")
    model = CrossEncoder.from_pretrained(args.reranker).eval()
    qids = sorted(train.queries)[::7][:args.queries]
    run = BM25Index.from_corpus(train.corpus).search({q: train.queries[q] for q in qids}, args.depth)
    queries = [train.queries[q] for q in qids for _ in run[q]]
    docs = [format_doc(train.corpus[d], model.doc_template) for q in qids for d in run[q]]

    def score(module) -> np.ndarray:
        with torch.inference_mode():
            return model.score_with(lambda b: module(**b).float().numpy(), queries, docs, 32, False, CPU)

    reference = score(model)
    print(f"{len(queries)} pairs ({len(qids)} train claims x BM25 top {args.depth})\n")
    print(f"{'Linear':50s} {'max ch':>7s} {'median ch':>9s} {'ratio':>6s}  top channels")
    absmax = input_channel_absmax(model, score)
    for name, peak in absmax.items():
        print(f"{name:50s} {peak.max():7.2f} {peak.median():9.2f} {peak.max() / peak.median():6.1f}  "
              f"{peak.topk(3).indices.tolist()}")
    quantized = quantize_linear_int8(model)
    plain = float(np.abs(score(quantized) - reference).mean())
    print(f"\nmean |int8 - fp32| logit, every Linear int8: {plain:.4f} (fp32 logit std {reference.std():.3f})")
    print(f"{'kept in fp32':50s} {'mean |d|':>8s} {'cut':>6s}")
    modules, fp32_modules = dict(quantized.named_modules()), dict(model.named_modules())
    for name in absmax:
        parent, attr = name.rsplit(".", 1)
        int8_linear = modules[name]
        setattr(modules[parent], attr, fp32_modules[name])
        error = float(np.abs(score(quantized) - reference).mean())
        setattr(modules[parent], attr, int8_linear)
        print(f"{name:50s} {error:8.4f} {1 - error / plain:6.1%}", flush=True)


if __name__ == "__main__":
    main()
