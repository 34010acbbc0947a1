"""Query-only adapter on frozen, cached embeddings.

The frozen encoder embeds the corpus and the queries once, through `cached_encode` (a second run
embeds nothing); after that the encoder is dropped. A batch is index tensors into the cached
matrices, `{"q": (B,), "docs": (B, G)}` with each row in the group layout `[pos, neg_1..neg_k]`
(ragtune/losses.py), so a training step is a (B, H) x (H, H) product and a loss: no encoder call.

Negatives (`adapter.negatives`): `random` corpus documents (the seed protocol of Chroma's
embedding-adapters report, with triplet margin 1.0), `hard` ones sampled from the frozen encoder's
own top-`hard_top_k` for the query with its positives removed, or `none` (in-batch only). Any loss
in LOSSES runs: embedding kind (info_nce: the other queries' documents are in-batch negatives),
triplet kind (own negatives only), score kind (on grouped scores / temperature).

With `data.train_file` (e.g. synthetic pairs from ragtune/commands/synth.py) its (qid, query, pos_id)
records replace the train split's queries and qrels, and dev holds out whole positive documents.
"""

from __future__ import annotations

import math
import time

import torch
from torch.utils.data import DataLoader

from ragtune.config import ConfigError
from ragtune.data.folds import dev_holdout, dev_source_name, load_split, own_dev_split
from ragtune.data.pairs import load_records, queries_from_records, split_by_positive_doc
from ragtune.eval.dense import corpus_texts
from ragtune.eval.metrics import evaluate
from ragtune.losses import compute_loss, loss_spec
from ragtune.models.adapter import AdapterModel, adapter_from_config, save_adapter
from ragtune.models.encoder import Encoder
from ragtune.retrieval.cache import cached_encode
from ragtune.retrieval.dense import dense_search
from ragtune.tasks import Task
from ragtune.training.curves import plot_curves
from ragtune.training.distributed import world_size

NEGATIVE_SOURCES = ("random", "hard", "none")


def check_dev_fraction(dev_fraction: float) -> None:
    if not 0 < dev_fraction < 1:
        raise ConfigError(f"data.dev_fraction={dev_fraction}: the adapter task needs a dev split in (0, 1)")


def hard_negative_pool(q_emb: torch.Tensor, d_emb: torch.Tensor, positives: list[list[int]],
                       top_k: int) -> torch.Tensor:
    """(Q, top_k) doc indices: each query's frozen top ranks with its positives removed."""
    max_pos = max(len(p) for p in positives)
    ranked = (q_emb @ d_emb.T).topk(min(top_k + max_pos, d_emb.shape[0]), dim=1).indices  # (Q, top_k + P)
    pool = []
    for row, pos in zip(ranked.tolist(), positives, strict=True):
        pool.append([d for d in row if d not in set(pos)][:top_k])
    return torch.tensor(pool, dtype=torch.long)


def make_collate(positives: list[list[int]], negatives: str, num_negatives: int, num_docs: int,
                 pool: torch.Tensor | None):
    """Batch of train-query indices -> {"q": (B,), "docs": (B, 1 + k)}; one random positive per query.

    Random negatives are uniform over the corpus (a positive is drawn with probability
    |pos| / N, about 2e-4 on SciFact, and is left in rather than resampled).
    """
    def collate(q_idx: list[int]) -> dict[str, torch.Tensor]:
        q = torch.tensor(q_idx, dtype=torch.long)  # (B,)
        pos = torch.tensor([positives[i][torch.randint(len(positives[i]), ()).item()] for i in q_idx])
        if negatives == "random":
            neg = torch.randint(num_docs, (len(q_idx), num_negatives))  # (B, k)
        elif negatives == "hard":
            pick = torch.rand(len(q_idx), pool.shape[1]).argsort(dim=1)[:, :num_negatives]  # (B, k), no repeats
            neg = pool[q].gather(1, pick)
        else:
            neg = torch.empty(len(q_idx), 0, dtype=torch.long)
        return {"q": q, "docs": torch.cat([pos[:, None], neg], dim=1)}  # docs (B, G)
    return collate


def adapter_loss(cfg_loss, q_emb: torch.Tensor, docs: torch.Tensor, temperature: torch.Tensor,
                 gather: bool = False) -> torch.Tensor:
    """The one dispatcher (ragtune.losses.compute_loss) on q_emb (B, H), docs (B, G, H) in group layout;
    `gather`: under N processes, in-batch negatives come from every process's share of the global batch."""
    return compute_loss(cfg_loss, group_size=docs.shape[1], q_emb=q_emb, d_emb=docs.reshape(-1, docs.shape[-1]),
                        temperature=temperature, gather=gather)


def build(cfg, accelerator) -> Task:
    acfg, show = cfg.adapter, accelerator.is_main_process
    if acfg.negatives not in NEGATIVE_SOURCES:
        raise ConfigError(f"adapter.negatives='{acfg.negatives}' is not one of {NEGATIVE_SOURCES}")
    loss_spec(cfg.loss.name, kinds=("embedding", "triplet", "score"), task="adapter")  # no teacher scores here
    train_set = load_split(cfg, "train")
    eval_set = load_split(cfg, "eval")
    doc_ids, texts = corpus_texts(train_set)
    doc_index = {d: i for i, d in enumerate(doc_ids)}

    # The only encoder calls of the task: each cached on disk, keyed by weights + settings + texts.
    start = time.perf_counter()
    encoder = Encoder.from_config(cfg.model).to(accelerator.device)
    cache_dir, bs = cfg.eval.cache_dir or None, cfg.eval.batch_size
    # every process builds the task: under N processes each encodes 1/N of the corpus (ragtune/retrieval/sharded.py)
    d_emb = cached_encode(encoder, texts, "doc", cache_dir, bs, show, collective=True)
    train_queries, train_qrels = train_set.queries, train_set.qrels
    if cfg.data.train_file:  # its queries replace the split's; dev is held out of them, never from qrels
        train_queries, train_qrels = queries_from_records(load_records(cfg.data.train_file), doc_index,
                                                          cfg.data.train_file)
    train_qids = list(train_queries)  # all train queries in one entry, so dev_fraction never re-embeds
    train_q = cached_encode(encoder, [train_queries[q] for q in train_qids], "query", cache_dir, bs, show)
    eval_qids = list(eval_set.queries)
    eval_q = cached_encode(encoder, [eval_set.queries[q] for q in eval_qids], "query", cache_dir, bs, show)
    own_dev = None if cfg.data.train_file else own_dev_split(cfg)  # synthetic queries: dev from the file
    if own_dev is not None:
        own_dev_qids = list(own_dev.queries)
        own_dev_q = cached_encode(encoder, [own_dev.queries[q] for q in own_dev_qids], "query", cache_dir, bs, show)
    del encoder  # from here on nothing runs the encoder
    cache_seconds = time.perf_counter() - start
    if accelerator.device.type == "cpu" and acfg.num_threads > 0:
        # (32, 384) x (384, 384) steps gain nothing from threads, and on a shared 2-core machine two
        # spinning threads made train() 43 s instead of 4 s (measured): set once the encoding is done.
        torch.set_num_threads(acfg.num_threads)

    device = accelerator.device
    d_emb = torch.from_numpy(d_emb).to(device)  # (N, H)
    row = {q: i for i, q in enumerate(train_qids)}
    if own_dev is not None:  # the collection's own dev split: every train query trains
        fit_qids, dev_qids = train_qids, own_dev_qids
        dev = (torch.from_numpy(own_dev_q).to(device), dev_qids, own_dev.qrels)
    else:
        if cfg.train.select == "best_dev" and not (cfg.data.dev_folds and not cfg.data.train_file):
            check_dev_fraction(cfg.data.dev_fraction)
        fit_qids, dev_qids = split_by_positive_doc(train_qids, train_qrels, cfg.data.dev_fraction, cfg.seed) \
            if cfg.data.train_file and cfg.train.select == "best_dev" else dev_holdout(cfg, train_qids)
        dev = (torch.from_numpy(train_q[[row[q] for q in dev_qids]]).to(device), dev_qids,
               {q: train_qrels[q] for q in dev_qids})
    fit_q = torch.from_numpy(train_q[[row[q] for q in fit_qids]]).to(device)  # (Qt, H)
    positives = [[doc_index[d] for d, g in train_qrels[q].items() if g >= 1] for q in fit_qids]
    keep = [i for i, p in enumerate(positives) if p]  # a query without a relevant doc cannot train
    splits = {"dev": dev, cfg.data.eval_split: (torch.from_numpy(eval_q).to(device), eval_qids, eval_set.qrels)}
    # On SciFact many test positives are also train positives: the run reports the eval queries with
    # and without one (Task.train_positives), to show how much of a gain is more than learning them.
    train_pos = frozenset(doc_ids[d] for p in positives for d in p)

    pool = None
    if acfg.negatives == "hard":
        pool = hard_negative_pool(fit_q, d_emb, positives, acfg.hard_top_k).cpu()
        if acfg.num_negatives > pool.shape[1]:
            raise ConfigError(f"adapter.num_negatives={acfg.num_negatives} > adapter.hard_top_k={acfg.hard_top_k}")
    num_neg = 0 if acfg.negatives == "none" else acfg.num_negatives
    loader = DataLoader(keep, batch_size=cfg.train.batch_size, shuffle=True,
                        collate_fn=make_collate(positives, acfg.negatives, num_neg, d_emb.shape[0], pool))

    adapter = adapter_from_config(acfg, d_emb.shape[1])
    model = AdapterModel(adapter, cfg.loss.temperature, cfg.loss.learn_temperature).to(device)

    gather = cfg.train.cross_device_negatives and world_size() > 1

    def step_fn(model: AdapterModel, batch: dict) -> tuple[torch.Tensor, dict[str, float]]:
        q, temperature = model(fit_q[batch["q"]])  # (B, H): through forward, which DDP wraps
        docs = d_emb[batch["docs"]]  # (B, G, H), frozen
        return adapter_loss(cfg.loss, q, docs, temperature, gather), {"temperature": temperature.item()}

    @torch.no_grad()
    def evaluate_split(model: AdapterModel, split: str) -> dict[str, float]:
        if split not in splits:
            raise ValueError(f"unknown split '{split}'; have {sorted(splits)}")
        q_emb, qids, qrels = splits[split]
        was_training = model.training
        model.eval()
        run = dense_search(model.adapter(q_emb), d_emb, qids, doc_ids, top_k=max(cfg.eval.top_k, *cfg.eval.k_values))
        model.train(was_training)
        return evaluate(run, qrels, cfg.eval.k_values)

    steps_per_epoch = math.ceil(len(loader) / cfg.train.grad_accum)
    curve_keys = [f"{m}@10" for m in ("recall", "mrr", "ndcg")]
    # the identity adapter = the frozen encoder; no dev at all under train.select=last
    dev_baseline = evaluate_split(model, "dev") if dev_qids else {}

    def export(model: AdapterModel, path) -> None:
        save_adapter(model.adapter, path)
        out = path.parent
        if (out / "metrics.jsonl").is_file() and dev_baseline:
            plot_curves(out / "metrics.jsonl", [f"dev/{k}" for k in curve_keys], out / "dev_curve.png",
                        title=f"{cfg.data.dataset} dev: {acfg.kind} adapter, {cfg.loss.name}",
                        steps_per_epoch=steps_per_epoch,
                        references={f"dev/{k}": dev_baseline[k] for k in curve_keys if k in dev_baseline})

    return Task(model=model, evaluate=evaluate_split, eval_splits=[cfg.data.eval_split], train_loader=loader,
                step_fn=step_fn, export=export, train_positives=train_pos,
                timings={"embed_or_cache_seconds": cache_seconds, "corpus_docs": len(doc_ids),
                         "train_queries": len(keep), "dev_queries": len(dev_qids),
                         "dev_source": dev_source_name(cfg, own_dev)})
