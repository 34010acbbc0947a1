"""How much of the grounded-answer task can be read from what the prompt shows? References
for the numbers of the `generator` task (configs/scifact_grounded_lora.py):

1. --config (--scorer minilm | qlm): score each shown passage against the claim, cite the best,
   abstain when the best score is below a threshold chosen on the dev examples (exact match).
   minilm = MiniLM cosine; qlm = the base generator's query likelihood of the claim given the
   passage, minus that given an empty passage (zero-shot, no LoRA). Both see exactly the passages
   (cut to generator.passage_tokens) the generator sees; the test AUC of the best score for
   telling no-gold examples from the rest needs no threshold.
2. --run DIR: the first answer token of a finished generator run (base + its LoRA, or the base
   model alone with --base), prompted exactly as the run was (its own config.json): AUC of
   the logit of the abstention's first token minus the best other logit (greedy abstains where
   it is > 0) for telling no-gold examples from the rest on DIR's test records; 0.5 = no
   abstention signal to calibrate.

    ragtune grounded-reference --config configs/scifact_grounded_lora.py [--scorer qlm] [--key=value ...]
    ragtune grounded-reference --run runs/scifact_grounded_lora [--base]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

from ragtune.config import ConfigError, load_config, parse_cli_overrides
from ragtune.data.beir import DataError, load_beir
from ragtune.data.instruct import load_instruct_records
from ragtune.data.pairs import split_queries
from ragtune.generation.grounded import ABSTAIN, auc, build_examples, grounded_metrics
from ragtune.models.encoder import Encoder
from ragtune.models.generator import load_adapter, load_generator
from ragtune.models.qlm_reranker import QLMReranker
from ragtune.tasks.generator import abstain_margins, example_settings, finished_run, first_stage


def reference_examples(cfg):
    """(dev, test) grounded examples exactly as the generator task builds them: all dev claims."""
    g = cfg.generator
    train = load_beir(cfg.data.dataset, cfg.data.train_split, cfg.data.data_root or None)
    test = load_beir(cfg.data.dataset, cfg.data.eval_split, cfg.data.data_root or None)
    _, tokenizer = load_generator(g.name, cfg.eval.cache_dir or None)
    candidates = first_stage(cfg, train, test)  # the generator task's own negatives and example settings
    split = split_queries(list(train.qrels), cfg.data.dev_fraction, cfg.seed)
    common = example_settings(cfg)
    dev = build_examples(train, candidates, tokenizer, qids=sorted(split.dev_qids), **common)
    tst = build_examples(test, candidates, tokenizer, max_examples=g.eval_max_examples, **common)
    return dev, tst


def minilm_scores(cfg, examples) -> np.ndarray:
    """(N, k) cosine between each claim and its shown passages under model.name (MiniLM by default)."""
    encoder = Encoder.from_config(cfg.model)  # its corpus cache is not needed here
    q = encoder.encode([e.claim for e in examples], "query", show_progress=False)
    p = encoder.encode([p for e in examples for p in e.passages], "doc", show_progress=False)
    return np.einsum("nh,nkh->nk", q, p.reshape(len(examples), cfg.generator.k_passages, -1))


def qlm_scores(cfg, examples) -> np.ndarray:
    """(N, k) pointwise mutual information of claim and passage under the base generator (UPR,
    ragtune/models/qlm_reranker.py): mean log p(claim | passage) - mean log p(claim | empty passage).
    The subtraction puts claims of different length and rarity on one scale for the threshold."""
    model, tokenizer = load_generator(cfg.generator.name, cfg.eval.cache_dir or None)
    qlm = QLMReranker(model.eval(), tokenizer, doc_max_tokens=cfg.generator.passage_tokens)
    k = cfg.generator.k_passages
    claims = [e.claim for e in examples]
    given = qlm.score([c for c in claims for _ in range(k)], [p for e in examples for p in e.passages],
                      show_progress=True).reshape(len(examples), k)
    return given - qlm.score(claims, [""] * len(claims))[:, None]


SCORERS = {"minilm": minilm_scores, "qlm": qlm_scores}


def similarity_reference(cfg, scorer: str) -> dict[str, dict[str, float]]:
    """Cite the best-scoring passage; abstain when the best score is below a dev-chosen threshold."""
    dev, tst = reference_examples(cfg)

    def answers(scores: np.ndarray, threshold: float) -> list[str]:
        return [ABSTAIN if s.max() < threshold else f"[{int(s.argmax()) + 1}]" for s in scores]

    scores = SCORERS[scorer](cfg, dev + tst)  # one call: the scoring model is loaded once
    dev_scores, test_scores = scores[:len(dev)], scores[len(dev):]
    threshold = max(np.unique(dev_scores.max(axis=1)),
                    key=lambda t: grounded_metrics(dev, answers(dev_scores, t))["exact_match"])
    best = test_scores.max(axis=1)
    no_gold = np.array([not e.gold for e in tst])
    return {"threshold": {"value": float(threshold), "dev_examples": len(dev)},
            "dev": grounded_metrics(dev, answers(dev_scores, threshold)),
            "test": {**grounded_metrics(tst, answers(test_scores, threshold)),
                     "abstention_auc": auc(-best[no_gold], -best[~no_gold]),
                     # the top passage is a gold one, on answerable claims, whatever the threshold
                     "best_passage_accuracy": float(np.mean([e.gold and int(s.argmax()) + 1 in e.gold
                                                             for e, s in zip(tst, test_scores, strict=True)
                                                             if e.gold]))}}


@torch.inference_mode()
def first_token_auc(run_dir: Path, base: bool) -> dict[str, float]:
    cfg, records_path = finished_run(run_dir)
    g = cfg.generator
    model, tokenizer = load_generator(g.name, cfg.eval.cache_dir or None)
    if not base:
        model = load_adapter(model, run_dir / "model")
    records = load_instruct_records(records_path)
    margins = abstain_margins(model, tokenizer, records, g)  # what greedy decoding thresholds at 0
    no_gold = np.array([r.answer == ABSTAIN for r in records])
    return {"examples": len(records), "no_gold": int(no_gold.sum()), "auc": auc(margins[no_gold], margins[~no_gold]),
            "mean_margin_no_gold": float(margins[no_gold].mean()), "mean_margin_gold": float(margins[~no_gold].mean())}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--config", help="similarity reference for this generator config (+ --key=value overrides)")
    which.add_argument("--run", type=Path,
                       help="a finished generator run: first-token abstention AUC on its test records")
    parser.add_argument("--base", action="store_true", help="with --run: score the base model instead of base + LoRA")
    parser.add_argument("--scorer", choices=sorted(SCORERS), default="minilm",
                        help="with --config: MiniLM cosine, or the base generator's query likelihood (PMI)")
    args, rest = parser.parse_known_args(argv)
    torch.manual_seed(0)
    try:
        if args.run:
            if rest:
                raise ConfigError(f"--run reads the run's own config; drop {rest}")
            res = first_token_auc(args.run, args.base)
        else:
            res = similarity_reference(load_config(args.config, parse_cli_overrides(rest)),
                                       args.scorer)
    except (ConfigError, DataError, FileNotFoundError, ValueError, json.JSONDecodeError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if args.run:
        print(f"{'base' if args.base else 'LoRA'} first token on {res['examples']} test records ({res['no_gold']} "
              f"no-gold): AUC {res['auc']:.3f}, mean abstention margin {res['mean_margin_no_gold']:.2f} "
              f"(no gold) vs {res['mean_margin_gold']:.2f} (gold shown)")
        return 0
    print(f"{args.scorer} threshold {res['threshold']['value']:.3f} chosen on {res['threshold']['dev_examples']} "
          "dev examples (exact match)")
    for split in ("dev", "test"):
        print(split, " ".join(f"{k} {v:.3f}" for k, v in res[split].items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
