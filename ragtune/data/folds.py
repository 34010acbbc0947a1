"""Cross-validation over queries, for collections whose only labels are one (test) split.

With `data.cv_folds=k` (k >= 2) the queries of `data.eval_split` are dealt into k seeded,
disjoint folds that cover them all. Fold `data.cv_fold` is the test part; the other k - 1 are
the train part, and every task's dev hold-out comes out of the train part as usual, so no
fold's test queries select anything. `load_split` is how tasks load their splits: without
folds it is `load_beir` of `data.train_split` / `data.eval_split`. `ragtune/commands/cv.py` runs
every fold and reports the mean and standard deviation over folds.
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Iterable
from typing import Literal

from ragtune.data.beir import NO_LABELS, BeirDataset, dataset_dir, load_beir, load_corpus_only


def query_folds(qids: Iterable[str], k: int, seed: int) -> list[list[str]]:
    """k disjoint folds covering `qids`: the sorted ids shuffled with `seed`, dealt round-robin
    (fold sizes differ by at most one; the same ids and seed give the same folds anywhere)."""
    order = sorted(set(qids))
    if k < 2 or k > len(order):
        raise ValueError(f"{k} folds need 2 <= k <= the number of queries ({len(order)})")
    random.Random(seed).shuffle(order)
    return [sorted(order[i::k]) for i in range(k)]


def restrict(dataset: BeirDataset, qids: Iterable[str], split: str) -> BeirDataset:
    """The dataset with only `qids` as queries (same corpus), relabelled `split`."""
    keep = sorted(qids)
    return dataclasses.replace(dataset, split=split, queries={q: dataset.queries[q] for q in keep},
                               qrels={q: dataset.qrels[q] for q in keep})


def load_split(cfg, role: Literal["train", "eval"]) -> BeirDataset:
    """The task's train or eval split; under cross-validation the fold's train or test part of data.eval_split.

    The eval part keeps the eval split's name (results stay `final/test/...`); the train part
    is named `<eval_split>-cv<k>-train<fold>`. With data.train_split='none' the train part is the
    corpus alone (`load_corpus_only`): training reads a synthetic data.train_file and no qrels."""
    data = cfg.data
    root = data.data_root or None
    if role == "train" and data.train_split == NO_LABELS:  # synthetic training: no train qrels exist or are read
        return load_corpus_only(data.dataset, root)
    if data.cv_folds == 0:
        return load_beir(data.dataset, data.train_split if role == "train" else data.eval_split, root)
    labelled = load_beir(data.dataset, data.eval_split, root)
    folds = query_folds(labelled.qrels, data.cv_folds, data.cv_seed)
    if role == "eval":
        return restrict(labelled, folds[data.cv_fold], data.eval_split)
    train_qids = [q for i, fold in enumerate(folds) if i != data.cv_fold for q in fold]
    return restrict(labelled, train_qids, f"{data.eval_split}-cv{data.cv_folds}-train{data.cv_fold}")


def own_dev_split(cfg) -> BeirDataset | None:
    """The collection's own dev split when it should select checkpoints, else None (hold out of train).

    data.dev_split: 'auto' takes qrels/dev.tsv when the collection ships one (and no cross-validation
    is running: a fold's dev comes out of its train part); 'holdout' never does; any other name is
    that qrels split, which must exist."""
    data = cfg.data
    if cfg.train.select == "last" or data.dev_folds:  # no dev at all, or dev folds of the train queries
        return None
    if data.dev_split == "holdout" or (data.dev_split == "auto" and data.cv_folds):
        return None
    name = "dev" if data.dev_split == "auto" else data.dev_split
    if data.dev_split == "auto" and not (dataset_dir(data.dataset, data.data_root or None) / "qrels" /
                                         f"{name}.tsv").is_file():
        return None
    dev = load_beir(data.dataset, name, data.data_root or None)
    return dataclasses.replace(dev, split="dev")


def dev_holdout(cfg, qids: list[str]) -> tuple[list[str], list[str]]:
    """(train, dev) query ids, input order kept: THE dev hold-out of the train queries in every task.

    `seeded_holdout` of data.dev_fraction; with data.dev_folds = k >= 2, fold data.dev_fold of the
    queries dealt into k seeded folds (`query_folds`), so k runs use every train query as dev once;
    with train.select=last, no dev (every query trains)."""
    from ragtune.data.pairs import seeded_holdout

    if cfg.train.select == "last":
        return list(qids), []
    if cfg.data.dev_folds >= 2:
        dev = set(query_folds(qids, cfg.data.dev_folds, cfg.seed)[cfg.data.dev_fold])
        return [q for q in qids if q not in dev], [q for q in qids if q in dev]
    return seeded_holdout(list(qids), cfg.data.dev_fraction, cfg.seed)


def dev_set(cfg, train: BeirDataset) -> tuple[BeirDataset, BeirDataset | None, set[str]]:
    """(dev, the own dev split or None, the train queries left to train on) for tasks that select on dev.

    The collection's own dev split when `own_dev_split` says so (every train query then trains),
    else the seeded hold-out of `train`'s queries (`seeded_holdout`, the same draw in every task)."""
    own_dev = own_dev_split(cfg)
    if own_dev is not None:
        return own_dev, own_dev, set(train.qrels)
    kept, held = dev_holdout(cfg, list(train.qrels))
    return restrict(train, held, "dev"), None, set(kept)


def dev_source_name(cfg, own_dev: BeirDataset | None) -> str:
    """What selected the checkpoints, for timings.json."""
    if own_dev is not None:
        return f"qrels/{'dev' if cfg.data.dev_split == 'auto' else cfg.data.dev_split}.tsv"
    if cfg.train.select == "last":
        return "none: every train query trains; the final weights are the last step's"
    if cfg.data.dev_folds >= 2:
        return f"fold {cfg.data.dev_fold} of the train queries in {cfg.data.dev_folds} folds (seed {cfg.seed})"
    return f"{cfg.data.dev_fraction:g} of the train queries, held out (seed {cfg.seed})"
