"""Bi-encoder fine-tuning with in-batch (and hard) negatives on a BEIR train split.

Dev = a seeded hold-out of train queries, scored against a small pool (their positives plus
the initial model's top-k) so checkpoint selection costs seconds, not a corpus re-encode.
The test split is only touched by the baseline/final evaluations in experiments/run.py.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from ragtune.config import ConfigError
from ragtune.data.beir import BeirDataset
from ragtune.data.collate import GroupCollator, RecordDataset, UniquePositiveBatchSampler, known_positive_mask
from ragtune.data.folds import dev_holdout, dev_source_name, load_split, own_dev_split
from ragtune.data.pairs import (
    check_negatives,
    load_records,
    queries_from_records,
    records_from_qrels,
    split_by_positive_doc,
)
from ragtune.eval.dense import candidate_pool, evaluate_dense
from ragtune.inference.backends import for_inference
from ragtune.losses import compute_loss, loss_spec
from ragtune.models.biencoder import BiEncoder
from ragtune.models.encoder import Encoder
from ragtune.models.export import export_sentence_transformers
from ragtune.tasks import Task
from ragtune.training.distributed import gather_with_grad, world_size
from ragtune.training.gradcache import grad_cache_step, split_batch


def make_loss(cfg, group_size: int):
    """(q_emb, d_emb, teacher, temperature, relevance) -> loss through the one dispatcher (ragtune.losses)."""
    # a bad name fails before any loading
    loss_spec(cfg.loss.name, kinds=("embedding", "triplet", "score", "distill"), task="biencoder")
    gather = cfg.train.cross_device_negatives and world_size() > 1

    def compute(q_emb, d_emb, teacher, temperature, relevance=None):
        """`relevance`: the batch's (q_relevant, d_index) for losses that mask known positives."""
        def known(gathered: bool) -> torch.Tensor:
            q_relevant, d_index = relevance
            return known_positive_mask(q_relevant, gather_with_grad(d_index) if gathered else d_index)

        return compute_loss(cfg.loss, group_size=group_size, q_emb=q_emb, d_emb=d_emb, temperature=temperature,
                            teacher=teacher, known_positives=known if relevance is not None else None, gather=gather)

    return compute


AUTO_PER_QUERY_ABOVE = 2.0  # data.sampling=auto samples per query above this many positives per query


def records_per_query(records: list) -> float:
    """Training records (query, positive pairs) per distinct query; a record without a qid counts alone."""
    return len(records) / max(1, len({r.qid or f"#record-{i}" for i, r in enumerate(records)}))


def dev_pool(encoder: Encoder, train: BeirDataset, dev_qids, cfg) -> BeirDataset:
    """Dev queries over their positives + the initial model's top-k: a cheap, hard dev corpus."""
    queries = {q: train.queries[q] for q in sorted(dev_qids)}
    dev = dataclasses.replace(train, queries=queries, qrels={q: train.qrels[q] for q in queries})
    return candidate_pool(encoder, dev, cfg.eval.dev_pool_top_k, cfg.eval, split="dev")


def dev_split(records: list, train: BeirDataset, cfg) -> tuple[BeirDataset, set[str]]:
    """(dataset the dev queries come from, dev query ids).

    Records whose queries are the train split's (qrels pairs, mined negatives) hold out a seeded
    fraction of the split's queries. A file whose queries are not the split's (synthetic pairs)
    holds dev out of the file itself, by source document, so no human label selects the checkpoint
    and no dev document is a training positive.
    """
    if not records or any(r.qid in train.qrels for r in records) or cfg.train.select == "last":
        return train, set(dev_holdout(cfg, list(train.qrels))[1])
    if cfg.data.dev_folds:  # a file of new queries (synthetic) holds dev out by document, never by query folds
        raise ConfigError("data.dev_folds: data.train_file holds queries that are not the split's; its dev is held "
                          "out by positive document, not by query folds: use one or the other")
    queries, qrels = queries_from_records(records, train.corpus, "data.train_file")
    _, dev_qids = split_by_positive_doc(list(queries), qrels, cfg.data.dev_fraction, cfg.seed)
    return dataclasses.replace(train, queries=queries, qrels=qrels), set(dev_qids)


def mined_file(cfg) -> Path:
    """<output_dir>/mined-<source>-<hash>.jsonl, the hash over every setting that shapes the mined records,
    so a file mined with other settings is never taken for this run's."""
    settings = {"mining": dataclasses.asdict(cfg.mining), "seed": cfg.seed, "dataset": cfg.data.dataset,
                "data_root": cfg.data.data_root, "split": cfg.data.train_split,
                "source": dataclasses.asdict(cfg.model) if cfg.mining.source == "dense"
                else [cfg.bm25.k1, cfg.bm25.b]}  # the list the hash always had: mined files stay valid
    if cfg.mining.source == "dense" and cfg.index.kind != "exact":  # only then: exact-mined hashes are unchanged
        settings["index"] = dataclasses.asdict(cfg.index)
    digest = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:10]
    return Path(cfg.output_dir) / f"mined-{cfg.mining.source}-{digest}.jsonl"


def training_file(cfg, accelerator) -> str:
    """data.train_file, or hard negatives mined now (mining.source) into mined_file(cfg)."""
    if cfg.data.train_file:
        return cfg.data.train_file
    path = mined_file(cfg)
    if accelerator.is_main_process and not path.is_file():  # kept with the run: resume reuses it
        from ragtune.retrieval.mine_file import mine

        tmp = path.with_name(f".{path.name}.tmp")  # renamed into place when complete
        stats = mine(cfg, tmp)
        os.replace(f"{tmp}.stats.json", f"{path}.stats.json")
        os.replace(tmp, path)
        print(f"mined {stats['records']} records from {cfg.mining.source}: "
              f"{stats['negatives_per_query_mean']:.1f} negatives/query")
    accelerator.wait_for_everyone()
    return str(path)


def positive_lengths(encoder: Encoder, records: list) -> list[int]:
    """Token count of each record's positive as the encoder will see it (capped at doc_max_length)."""
    return [len(ids) for ids in encoder.tokenizer([encoder.cfg.doc_prefix + r.pos for r in records], truncation=True,
                                                  max_length=encoder.cfg.doc_max_length)["input_ids"]]


@dataclass(frozen=True)
class PairTraining:
    """What the bi-encoder and late-interaction tasks share: (query, positive[, negatives]) records
    batched with unique positives, the dev hold-out scored against a pool, and the test split."""

    loader: DataLoader
    sampler: UniquePositiveBatchSampler
    records: list
    dev: BeirDataset | None  # dev queries over their pool; None when train.select=last
    dev_qids: set[str]
    test: Callable[[], BeirDataset]  # loaded at the first test evaluation: no test label is read before
    test_split: str
    own_dev: BeirDataset | None
    per_record: float
    per_query: bool
    dev_from_file: bool = False  # dev = queries of a train file's held-out positive documents (synthetic pairs)

    def summary(self, group_size: int) -> str:
        return (f"train records {len(self.records)} ({len({r.qid for r in self.records})} queries), dev queries "
                f"{len(self.dev_qids)} over a pool of {len(self.dev.corpus) if self.dev else 0} docs, group size "
                f"{group_size}, {len(self.sampler)} batches/epoch, sampling per "
                f"{'query' if self.per_query else 'pair'} ({self.per_record:.1f} records/query)")

    def train_positives(self) -> frozenset[str] | None:
        """A file's records may lack document ids (synthetic pairs): then no seen/unseen split."""
        return frozenset(r.pos_id for r in self.records) if all(r.pos_id for r in self.records) else None

    def timings(self, cfg) -> dict:
        source = (f"{cfg.data.dev_fraction:g} of data.train_file's positive documents, their queries held out "
                  f"(seed {cfg.seed})") if self.dev_from_file else dev_source_name(cfg, self.own_dev)
        return {"records_per_query": self.per_record, "sampling": "query" if self.per_query else "pair",
                "dev_source": source}


def pair_training(cfg, accelerator, encoder: Encoder, tokenize) -> PairTraining:
    """Records (qrels, a train file, or negatives mined now), the dev hold-out with its pool (scored by
    `encoder`, the initial model), and a loader whose batches `tokenize(texts, kind)` makes."""
    train = load_split(cfg, "train")

    @functools.cache
    def test() -> BeirDataset:
        split = load_split(cfg, "eval")
        if cfg.eval.test_pool_top_k > 0:  # pooled test: cheap for sweeps, labelled '<split>-pool<k>' in results
            split = candidate_pool(encoder, split, cfg.eval.test_pool_top_k, cfg.eval)
        return split

    test_split = cfg.data.eval_split + (f"-pool{cfg.eval.test_pool_top_k}" if cfg.eval.test_pool_top_k > 0 else "")
    source = training_file(cfg, accelerator) if (cfg.data.train_file or cfg.mining.source) else ""
    records = load_records(source) if source else records_from_qrels(train, cfg.data.min_grade)
    min_grade = cfg.data.min_grade  # a file's records may hold pairs below it (mined from all qrels)
    records = [r for r in records if train.qrels.get(r.qid, {}).get(r.pos_id, min_grade) >= min_grade]
    check_negatives(records, cfg.data.num_negatives, source or f"qrels of {train.name}/{train.split}")
    own_dev = own_dev_split(cfg)
    if own_dev is not None and (not records or any(r.qid in train.qrels for r in records)):
        dev_source, dev_qids = own_dev, set(own_dev.qrels)
    else:  # synthetic pairs keep dev out of the file itself: no human label selects their checkpoint
        own_dev = None
        dev_source, dev_qids = dev_split(records, train, cfg)
    dev_from_file = own_dev is None and bool(dev_qids) and bool(records) and not any(
        r.qid in train.qrels for r in records)
    records = [r for r in records if r.qid not in dev_qids]  # dev queries never train
    dev = dev_pool(encoder, dev_source, dev_qids, cfg) if dev_qids else None

    # The train split's qrels (dev queries included: their labels are facts about the documents too)
    relevant = {q: {d for d, grade in docs.items() if grade >= 1} for q, docs in train.qrels.items()} \
        if cfg.data.mask_known_positives else None
    doc_index = {doc_id: i for i, doc_id in enumerate(train.corpus)} if relevant is not None else None
    collate = GroupCollator(tokenize, cfg.data.num_negatives, cfg.seed, relevant, doc_index)
    lengths = positive_lengths(encoder, records) if cfg.train.bucket_size > 0 else None
    per_record = records_per_query(records)
    per_query = cfg.data.sampling == "query" or (cfg.data.sampling == "auto" and per_record > AUTO_PER_QUERY_ABOVE)
    weights = [float(train.qrels.get(r.qid, {}).get(r.pos_id, 1)) for r in records] \
        if per_query and cfg.data.grade_weighted else None
    sampler = UniquePositiveBatchSampler(records, cfg.train.batch_size, cfg.seed, drop_last=True,
                                         lengths=lengths, bucket_size=cfg.train.bucket_size,
                                         per_query=per_query, weights=weights)
    # A private generator: DataLoader would otherwise draw its seed from the global RNG at every
    # epoch start, and a resumed run (which starts mid-epoch) would see a different RNG stream.
    loader = DataLoader(RecordDataset(records), batch_sampler=sampler, collate_fn=collate,
                        generator=torch.Generator().manual_seed(cfg.seed))
    if cfg.eval.test_pool_top_k > 0:
        test()  # the pool is the initial model's top k: built now, while `encoder` holds the initial weights
    return PairTraining(loader, sampler, records, dev, dev_qids, test, test_split, own_dev, per_record, per_query,
                        dev_from_file)


def build(cfg, accelerator) -> Task:
    group_size = 1 + cfg.data.num_negatives
    batch_loss = make_loss(cfg, group_size)  # first: a bad loss name fails before any loading
    encoder = Encoder.from_config(cfg.model).to(accelerator.device)
    model = BiEncoder(encoder, cfg.loss.temperature, cfg.loss.learn_temperature)
    pairs = pair_training(cfg, accelerator, encoder, encoder.tokenize)
    dev = pairs.dev

    def step_fn(model, batch):
        temperature = accelerator.unwrap_model(model).temperature
        teacher = batch.get("teacher")
        relevance = (batch["q_relevant"], batch["d_index"]) if "q_relevant" in batch else None
        if cfg.train.gradcache_chunk > 0:
            chunk = cfg.train.gradcache_chunk
            loss = grad_cache_step(lambda b: model(**b), lambda b: model(**b),
                                   split_batch(batch["q"], chunk), split_batch(batch["d"], chunk),
                                   lambda q, d: batch_loss(q, d, teacher, temperature, relevance),
                                   backward_fn=accelerator.backward)
        else:
            loss = batch_loss(model(**batch["q"]), model(**batch["d"]), teacher, temperature, relevance)
        return loss, {"temperature": float(temperature)}

    def evaluate(model, split_name: str) -> dict[str, float]:
        show = accelerator.is_main_process
        if split_name == "dev":
            return evaluate_dense(model.encoder, dev, cfg.eval, show_progress=False, use_cache=False).metrics
        encoder = for_inference(model.encoder, cfg.eval.backend, cfg.eval.cache_dir or None)  # dev stays on torch
        result = evaluate_dense(encoder, pairs.test(), cfg.eval, show_progress=show, index=cfg.index)
        return result.metrics

    if accelerator.is_main_process:
        print(pairs.summary(group_size))
    return Task(model=model, evaluate=evaluate, eval_splits=[pairs.test_split], train_loader=pairs.loader,
                step_fn=step_fn, step_does_backward=cfg.train.gradcache_chunk > 0,
                export=lambda m, path: export_sentence_transformers(m.encoder, path),
                train_positives=pairs.train_positives(), timings=pairs.timings(cfg))
