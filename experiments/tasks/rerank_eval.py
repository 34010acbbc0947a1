"""Evaluation-only reranking: a first stage, then a saved cross-encoder or the zero-shot
query-likelihood LLM (rerank.scorer=qlm, model.name=smollm2) on the eval split.

results.json: `baseline/test/...` = the first stage alone, `final/test/...` = reranked; both over
the same queries (the first `rerank.max_queries` when > 0: the LLM is slow on CPU).
"""

from __future__ import annotations

from experiments.tasks import TaskParts
from experiments.tasks.reranker import first_stage_runs, make_scorer, score_cache_path
from ragtune.config import ConfigError
from ragtune.data.beir import load_beir
from ragtune.metrics import evaluate
from ragtune.models.cross_encoder import CrossEncoder, format_doc
from ragtune.models.generator import load_generator
from ragtune.models.qlm_reranker import QLMReranker
from ragtune.rerank import cascade, interpolate, load_score_cache, rerank_run, save_score_cache

SCORERS = ("cross_encoder", "qlm")


def build(cfg, accelerator) -> TaskParts:
    rc = cfg.rerank
    if rc.scorer not in SCORERS:
        raise ValueError(f"rerank.scorer must be one of {SCORERS}, got {rc.scorer!r}")
    if rc.first_stage != "bm25" and not rc.first_stage_model:
        # Here model.name is the reranker: falling back to it would embed with a cross-encoder's weights.
        raise ConfigError(f"task rerank_eval with rerank.first_stage={rc.first_stage!r} needs "
                          "rerank.first_stage_model (e.g. minilm or a fine-tuned bi-encoder folder)")
    show = accelerator.is_main_process
    test = load_beir(cfg.data.dataset, cfg.data.eval_split, cfg.data.data_root or None)
    runs, timings = first_stage_runs(cfg, {cfg.data.eval_split: test}, show)
    run = runs[cfg.data.eval_split]
    qids = list(test.queries)[: rc.max_queries or None]
    queries, qrels = {q: test.queries[q] for q in qids}, {q: test.qrels[q] for q in qids}
    if rc.scorer == "qlm":
        model = QLMReranker(*load_generator(cfg.model.name), doc_max_tokens=rc.qlm_doc_max_tokens)
        doc_texts = {d: doc.full_text() for d, doc in test.corpus.items()}
    else:
        model = CrossEncoder.from_pretrained(cfg.model.name)  # its saved max_length / template
        doc_texts = {d: format_doc(doc, model.doc_template) for d, doc in test.corpus.items()}
    model.to(accelerator.device)
    cheap = CrossEncoder.from_pretrained(rc.cascade_model) if rc.cascade_model else None
    parts = TaskParts(model=model, evaluate=None, eval_splits=[cfg.data.eval_split], timings=timings)
    timings["eval_queries"] = len(qids)

    def evaluate_split(m, split: str) -> dict[str, float]:
        scorer = make_scorer(m, rc.batch_size)
        if cheap is not None:
            reranked, stats = cascade([(make_scorer(cheap, rc.batch_size), rc.cascade_keep), (scorer, rc.final_k)],
                                      run, queries, doc_texts, rc.retrieve_n, show_progress=show)
            for i, s in enumerate(stats):
                parts.timings.update(s.summary(f"cascade{i + 1}"))
        else:
            path = score_cache_path(cfg, m, split) if isinstance(m, CrossEncoder) else None
            cache = load_score_cache(path) if path else {}
            reranked, s = rerank_run(scorer, run, queries, doc_texts, rc.retrieve_n, rc.retrieve_n, cache=cache,
                                     show_progress=show, desc=f"rerank {split} ({rc.scorer})")
            if path:
                save_score_cache(path, cache)
            parts.timings.update(s.summary("rerank"))
        reranked = {q: dict(list(docs.items())[:rc.final_k])
                    for q, docs in interpolate(reranked, run, rc.interpolate).items()}
        return evaluate(reranked, qrels, cfg.eval.k_values)

    parts.evaluate = evaluate_split
    parts.baseline_evaluate = lambda split: evaluate({q: run[q] for q in qids}, qrels, cfg.eval.k_values)
    return parts
