"""Evaluation-only reranking: a first stage, then a saved cross-encoder or the zero-shot
query-likelihood LLM (rerank.scorer=qlm, model.name=smollm2) on the eval split.

results.json: `baseline/test/...` = the first stage alone, `final/test/...` = reranked; both over
the same queries (the first `rerank.max_queries` when > 0: the LLM is slow on CPU).
With `rerank.interpolate_grid`, the mixing weight is chosen on the dev hold-out of the train split
(reranked the same way) and written to timings.json as `interpolate_chosen`, with each weight's
dev metric; the test split never picks it.
"""

from __future__ import annotations

import functools

from ragtune.config import ConfigError
from ragtune.data.folds import dev_set, load_split
from ragtune.eval.metrics import evaluate
from ragtune.models.cross_encoder import CrossEncoder, format_doc
from ragtune.models.generator import load_generator
from ragtune.models.qlm_reranker import QLMReranker
from ragtune.rerank import (
    cascade,
    choose_interpolation,
    interpolate,
    load_score_cache,
    rerank_run,
    save_score_cache,
)
from ragtune.tasks import Task
from ragtune.tasks.reranker import calibration_timings, first_stage_runs, for_rerank, make_scorer, score_cache_path

SCORERS = ("cross_encoder", "qlm")


def build(cfg, accelerator) -> Task:
    rc = cfg.rerank
    if rc.scorer not in SCORERS:
        raise ValueError(f"rerank.scorer must be one of {SCORERS}, got {rc.scorer!r}")
    if rc.first_stage != "bm25" and not rc.first_stage_model:
        # Here model.name is the reranker: falling back to it would embed with a cross-encoder's weights.
        raise ConfigError(f"task rerank_eval with rerank.first_stage={rc.first_stage!r} needs "
                          "rerank.first_stage_model (e.g. minilm or a fine-tuned bi-encoder folder)")
    if rc.interpolate_grid:  # checked before any encoding or reranking, not after them
        if rc.cascade_model:
            raise ConfigError("rerank.interpolate_grid is not supported with rerank.cascade_model; "
                              "set rerank.interpolate")
        bad = [w for w in rc.interpolate_grid if not 0.0 <= w <= 1.0]
        if bad:
            raise ConfigError(f"rerank.interpolate_grid={list(rc.interpolate_grid)}: weights must be in [0, 1], "
                              f"got {bad}")
        if not cfg.train.metric_for_best.partition("@")[2].isdigit():
            raise ConfigError(f"rerank.interpolate_grid picks w by train.metric_for_best="
                              f"'{cfg.train.metric_for_best}', which needs a cutoff such as 'ndcg@10'")
    show = accelerator.is_main_process
    test = load_split(cfg, "eval")
    runs, timings = first_stage_runs(cfg, {cfg.data.eval_split: test}, show)
    run = runs[cfg.data.eval_split]
    qids = list(test.queries)[: rc.max_queries or None]
    queries, qrels = {q: test.queries[q] for q in qids}, {q: test.qrels[q] for q in qids}
    if rc.scorer == "qlm":
        model = QLMReranker(*load_generator(cfg.model.name), doc_max_tokens=rc.qlm_doc_max_tokens)
    else:
        model = CrossEncoder.from_pretrained(cfg.model.name)  # its saved max_length / template

    def texts(dataset) -> dict[str, str]:
        if rc.scorer == "qlm":
            return {d: doc.full_text() for d, doc in dataset.corpus.items()}
        return {d: format_doc(doc, model.doc_template) for d, doc in dataset.corpus.items()}

    doc_texts = texts(test)
    model.to(accelerator.device)
    cheap = CrossEncoder.from_pretrained(rc.cascade_model) if rc.cascade_model else None
    timings["eval_queries"] = len(qids)

    def rerank_cached(m, run, queries, split: str):
        """Rerank the top retrieve_n; cross-encoder scores go through the on-disk cache."""
        path = score_cache_path(cfg, m, split) if not isinstance(m, QLMReranker) else None
        cache = load_score_cache(path) if path else {}
        reranked, s = rerank_run(make_scorer(m, rc.batch_size), run, queries, doc_texts, rc.retrieve_n,
                                 rc.retrieve_n, cache=cache, show_progress=show, desc=f"rerank {split} ({rc.scorer})")
        if path:
            save_score_cache(path, cache)
        return reranked, s

    @functools.cache  # chosen once per model: the dev scores do not change
    def mixing_weight(m) -> float:
        """rerank.interpolate, or the grid's best weight on the dev queries (`dev_set`)."""
        if not rc.interpolate_grid:
            return rc.interpolate
        dev = dev_set(cfg, load_split(cfg, "train"))[0]
        dev_qids = sorted(dev.queries)
        dev_run = first_stage_runs(cfg, {"dev": dev}, show)[0]["dev"]  # first stage for dev only
        doc_texts.update(texts(dev))  # BEIR SciFact: one corpus for both splits, so a no-op there
        reranked, _ = rerank_cached(m, dev_run, dev.queries, "dev")
        metric = cfg.train.metric_for_best
        w, per_w = choose_interpolation(reranked, dev_run, dev.qrels, rc.interpolate_grid, metric)
        timings.update({"interpolate_chosen": w, "interpolate_dev_queries": len(dev_qids),
                        **{f"interpolate_dev_{metric}_w{weight}": v for weight, v in per_w.items()}})
        print(f"interpolate: w={w} chosen on {len(dev_qids)} dev queries "
              f"({', '.join(f'{weight}: {v:.4f}' for weight, v in per_w.items())})")
        return w

    def evaluate_split(m, split: str) -> dict[str, float]:
        if rc.scorer == "cross_encoder":  # the query-likelihood LLM runs on torch
            m = for_rerank(cfg, m, test.corpus)
        scorer = make_scorer(m, rc.batch_size)
        if cheap is not None:
            cheap_m = for_rerank(cfg, cheap, test.corpus)
            reranked, stats = cascade([(make_scorer(cheap_m, rc.batch_size), rc.cascade_keep), (scorer, rc.final_k)],
                                      run, queries, doc_texts, rc.retrieve_n, show_progress=show)
            for i, s in enumerate(stats):
                timings.update(s.summary(f"cascade{i + 1}"))
        else:
            reranked, s = rerank_cached(m, run, queries, split)
            timings.update({**s.summary("rerank"), **calibration_timings(m)})
        reranked = {q: dict(list(docs.items())[:rc.final_k])
                    for q, docs in interpolate(reranked, run, mixing_weight(m)).items()}
        return evaluate(reranked, qrels, cfg.eval.k_values)

    return Task(model=model, evaluate=evaluate_split, eval_splits=[cfg.data.eval_split], timings=timings,
                baseline_evaluate=lambda split: evaluate({q: run[q] for q in qids}, qrels, cfg.eval.k_values))
