"""BM25 + dense hybrid first stage, evaluation only, on the dev hold-out of train and on test.

With `--hybrid.tune=true` the fusion kind and dense weight are chosen on dev (the same
seeded hold-out of train queries the training tasks use for checkpoint selection; the whole
corpus is searched) before test is looked at; the grid is saved to <output_dir>/dev_grid.json.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from ragtune.config import HybridConfig
from ragtune.data.beir import BeirDataset
from ragtune.data.folds import dev_set, load_split
from ragtune.eval.metrics import evaluate
from ragtune.models.encoder import Encoder
from ragtune.retrieval.first_stage import FUSIONS, check_hybrid, first_stage_run, fuse
from ragtune.tasks import Task

WEIGHTS = tuple(round(0.1 * i, 1) for i in range(11))  # dense share; 0 = BM25 only, 1 = dense only


def tuning_dev(cfg) -> BeirDataset:
    """The dev queries that tune the fusion (`dev_set`: own dev split, else the train hold-out)."""
    train = load_split(cfg, "train")
    dev = dev_set(cfg, train)[0]
    if not dev.queries:
        raise ValueError(f"data.dev_fraction={cfg.data.dev_fraction} holds out no {train.split} queries")
    return dev


def tune(cfg, encoder, dev: BeirDataset, metric: str) -> tuple[HybridConfig, list[dict]]:
    """Grid over fusion x weight on dev; the best `metric` wins (first one on ties)."""
    top_k = max(cfg.eval.top_k, *cfg.eval.k_values)
    depth = max(cfg.hybrid.depth, top_k)
    bm25_run, _ = first_stage_run("bm25", dev, cfg, top_k=depth)
    dense_run, _ = first_stage_run("dense", dev, cfg, encoder=encoder, top_k=depth)
    grid, best = [], None
    for fusion in FUSIONS:
        for weight in WEIGHTS:
            hcfg = dataclasses.replace(cfg.hybrid, fusion=fusion, weight=weight)
            metrics = evaluate(fuse(bm25_run, dense_run, hcfg, top_k), dev.qrels, cfg.eval.k_values)
            grid.append({"fusion": fusion, "weight": weight, **metrics})
            if best is None or metrics[metric] > best[1]:
                best = (hcfg, metrics[metric])
    return best[0], grid


def build(cfg, accelerator) -> Task:
    check_hybrid(cfg.hybrid)  # before loading or encoding anything
    encoder = Encoder.from_config(cfg.model).to(accelerator.device)
    test = load_split(cfg, "eval")
    dev = tuning_dev(cfg)
    if cfg.hybrid.tune:
        metric = cfg.train.metric_for_best
        hcfg, grid = tune(cfg, encoder, dev, metric)
        cfg = dataclasses.replace(cfg, hybrid=hcfg)
        if accelerator.is_main_process:
            out = Path(cfg.output_dir)
            (out / "dev_grid.json").write_text(json.dumps({"chosen": dataclasses.asdict(hcfg), "grid": grid},
                                                          indent=2) + "\n")
            print(f"dev {metric} ({len(dev.queries)} queries):")
            for row in grid:
                print(f"  {row['fusion']:8s} w_dense={row['weight']:.1f}  {row[metric]:.4f}")
            print(f"chosen on dev: fusion={hcfg.fusion} weight={hcfg.weight}")
    splits = {"dev": dev, cfg.data.eval_split: test}
    timings: dict[str, float] = {}

    def evaluate_split(model, split: str) -> dict[str, float]:
        dataset = splits[split]
        run, run_timings = first_stage_run("hybrid", dataset, cfg, encoder=model,
                                           show_progress=accelerator.is_main_process)
        timings.update({f"{split}/{k}": v for k, v in run_timings.items()})
        return evaluate(run, dataset.qrels, cfg.eval.k_values)

    return Task(model=encoder, evaluate=evaluate_split, eval_splits=list(splits), timings=timings)
