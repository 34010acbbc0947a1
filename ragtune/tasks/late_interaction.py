"""Late interaction (ColBERT-style) fine-tuning: the bi-encoder's records, batches and loss path,
with MaxSim scores in place of dot products (ragtune/models/late_interaction.py).

The eval split is reported three ways, each its own split in results.json:
- `<split>`: exact MaxSim search over the whole corpus (token store cached like embeddings);
- `<split>-rerank-<first stage><n>`: MaxSim reranking the first stage's top late.rerank_n;
- `<split>-<first stage>`: that first stage alone, the same before and after training.
The first stage (late.rerank_first_stage; its dense side is rerank.first_stage_model, or else the
initial encoder mean-pooled with model.*'s settings) is run once, before training. Storage per
document and seconds per query go to timings.json. Task `late_eval` evaluates a saved folder the
same three ways, without training.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable

from ragtune.config import ConfigError
from ragtune.data.beir import BeirDataset
from ragtune.data.folds import load_split
from ragtune.eval.dense import corpus_texts
from ragtune.eval.metrics import evaluate
from ragtune.models.encoder import Encoder, resolve_model_path
from ragtune.models.export import export_late_interaction
from ragtune.models.late_interaction import LATE_META, LateInteraction
from ragtune.retrieval.first_stage import first_stage_run
from ragtune.retrieval.late import TokenStore, cached_token_store, late_rerank, late_search
from ragtune.tasks import Task
from ragtune.tasks.biencoder import make_loss, pair_training
from ragtune.training.gradcache import grad_cache_step, split_batch


def first_stage_encoder(cfg, base: Encoder) -> Encoder:
    """The dense side of the first stage: rerank.first_stage_model when set, else `base`."""
    if not cfg.rerank.first_stage_model:
        return base
    return Encoder.from_config(dataclasses.replace(cfg.model, name=cfg.rerank.first_stage_model))


def evaluation(cfg, accelerator, test: BeirDataset, dev: BeirDataset | None, encoder: Encoder,
               timings: dict) -> tuple[Callable, list[str]]:
    """(evaluate(model, split), the eval splits): the whole corpus, the rerank of the first stage
    (run now, with `encoder` for its dense side) and that first stage alone."""
    k = max(cfg.eval.top_k, *cfg.eval.k_values)
    first_stage = cfg.late.rerank_first_stage
    first_run = None
    if first_stage and accelerator.is_main_process:
        first_run, stage_timings = first_stage_run(first_stage, test, cfg, encoder=encoder,
                                                   top_k=max(cfg.late.rerank_n, k), show_progress=False)
        timings.update({f"first_stage_{key}": v for key, v in stage_timings.items()})
    rerank_split = f"{test.split}-rerank-{first_stage}{cfg.late.rerank_n}"
    first_split = f"{test.split}-{first_stage}"

    def search(model: LateInteraction, dataset, store: TokenStore, split: str) -> dict[str, float]:
        doc_ids, _ = corpus_texts(dataset)
        query_ids = list(dataset.queries)
        start = time.perf_counter()
        q_vectors = model.encode_queries([dataset.queries[q] for q in query_ids], cfg.eval.batch_size)
        run = late_search(q_vectors, store, query_ids, doc_ids, k, cfg.late.search_batch_elements,
                          show_progress=accelerator.is_main_process and split != "dev")
        if split != "dev":
            timings[f"{split}_search_seconds_per_query"] = (time.perf_counter() - start) / max(1, len(query_ids))
            timings[f"{split}_store_bytes_per_doc"] = store.bytes_per_doc()
            timings[f"{split}_store_tokens_per_doc"] = len(store.vectors) / max(1, len(store))
            timings[f"{split}_store_mb"] = store.vectors.nbytes / 2**20
        return evaluate(run, dataset.qrels, cfg.eval.k_values)

    def rerank(model: LateInteraction, store: TokenStore) -> dict[str, float]:
        doc_ids, _ = corpus_texts(test)
        query_ids = list(test.queries)
        start = time.perf_counter()
        q_vectors = model.encode_queries([test.queries[q] for q in query_ids], cfg.eval.batch_size)
        run = late_rerank(q_vectors, store, query_ids, doc_ids, first_run, cfg.late.rerank_n)
        timings[f"{rerank_split}_seconds_per_query"] = (time.perf_counter() - start) / max(1, len(query_ids))
        return evaluate(run, test.qrels, cfg.eval.k_values)

    def evaluate_split(model, split_name: str) -> dict[str, float]:
        if split_name == "dev":
            _, texts = corpus_texts(dev)
            store = cached_token_store(model, texts, batch_size=cfg.eval.batch_size, show_progress=False,
                                       use_cache=False)
            return search(model, dev, store, "dev")
        if split_name == first_split:
            return evaluate(first_run, test.qrels, cfg.eval.k_values)
        _, texts = corpus_texts(test)
        store = cached_token_store(model, texts, cfg.eval.cache_dir or None, cfg.eval.batch_size,
                                   show_progress=accelerator.is_main_process)
        if split_name == rerank_split:
            return rerank(model, store)
        return search(model, test, store, split_name)

    return evaluate_split, [test.split] + ([rerank_split, first_split] if first_stage else [])


def _model(cfg, accelerator) -> LateInteraction:
    return LateInteraction.from_config(cfg.model, cfg.late, cfg.seed, temperature=cfg.loss.temperature,
                                       learn_temperature=cfg.loss.learn_temperature).to(accelerator.device)


def build(cfg, accelerator) -> Task:
    group_size = 1 + cfg.data.num_negatives
    batch_loss = make_loss(cfg, group_size)  # first: a bad loss name fails before any loading
    model = _model(cfg, accelerator)
    # The dev pool's encoder: the initial backbone, mean-pooled as configured. It shares the backbone,
    # so everything it computes is computed now, before any training step.
    base = Encoder(model.backbone, model.tokenizer, cfg.model)
    pairs = pair_training(cfg, accelerator, base, model.tokenize)
    timings = pairs.timings(cfg)
    evaluate_split, splits = evaluation(cfg, accelerator, pairs.test(), pairs.dev, first_stage_encoder(cfg, base),
                                        timings)

    def step_fn(model, batch):
        temperature = accelerator.unwrap_model(model).temperature
        teacher = batch.get("teacher")
        relevance = (batch["q_relevant"], batch["d_index"]) if "q_relevant" in batch else None
        encode_q, encode_d = (lambda b: model(**b, kind="query")), (lambda b: model(**b, kind="doc"))
        if cfg.train.gradcache_chunk > 0:
            chunk = cfg.train.gradcache_chunk
            loss = grad_cache_step(encode_q, encode_d, split_batch(batch["q"], chunk), split_batch(batch["d"], chunk),
                                   lambda q, d: batch_loss(q, d, teacher, temperature, relevance),
                                   backward_fn=accelerator.backward)
        else:
            loss = batch_loss(encode_q(batch["q"]), encode_d(batch["d"]), teacher, temperature, relevance)
        return loss, {"temperature": float(temperature)}

    if accelerator.is_main_process:
        print(pairs.summary(group_size))
    return Task(model=model, evaluate=evaluate_split, eval_splits=splits, train_loader=pairs.loader,
                step_fn=step_fn, step_does_backward=cfg.train.gradcache_chunk > 0,
                export=export_late_interaction, train_positives=pairs.train_positives(), timings=timings)


def build_evaluation(cfg, accelerator) -> Task:
    """Task `late_eval`: model.name is a saved late-interaction folder, evaluated without training with
    the settings it was saved with (dim, query length, masks); late.rerank_* and eval.* apply."""
    path = resolve_model_path(cfg.model.name)
    if not (path / LATE_META).is_file():
        raise ConfigError(f"model.name={cfg.model.name!r}: not a late-interaction folder (no {LATE_META}); "
                          "late_eval reads what the late_interaction task exported")
    model = LateInteraction.load(path).to(accelerator.device)
    timings: dict = {}
    evaluate_split, splits = evaluation(cfg, accelerator, load_split(cfg, "eval"), None,
                                        first_stage_encoder(cfg, None), timings)
    return Task(model=model, evaluate=evaluate_split, eval_splits=splits, timings=timings)
