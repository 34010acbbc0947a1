"""Cross-validation folds over queries: disjoint, covering, seeded; load_split's train and test parts."""

import pytest

from ragtune.config import ExperimentConfig, apply_overrides
from ragtune.data.folds import load_split, query_folds


def test_folds_are_disjoint_cover_every_query_and_depend_on_the_seed_only():
    qids = [f"q{i}" for i in range(23)]
    folds = query_folds(qids, 5, seed=0)
    assert sorted(q for fold in folds for q in fold) == sorted(qids)  # covering, no query twice
    assert [len(f) for f in folds] == [5, 5, 5, 4, 4]
    assert query_folds(reversed(qids), 5, seed=0) == folds  # input order does not matter
    assert query_folds(qids, 5, seed=1) != folds
    with pytest.raises(ValueError, match="2 <= k <= the number of queries"):
        query_folds(qids[:3], 4, seed=0)


def test_load_split_gives_each_fold_its_own_test_part_and_the_rest_to_train(tiny_data_root):
    base = apply_overrides(ExperimentConfig(), {"data.dataset": "tiny", "data.data_root": str(tiny_data_root),
                                                "data.cv_folds": "3"})
    all_test = {f"q{i}" for i in range(0, 40, 4)}  # the tiny set's test queries
    tests = []
    for fold in range(3):
        cfg = apply_overrides(base, {"data.cv_fold": str(fold)})
        train, test = load_split(cfg, "train"), load_split(cfg, "eval")
        assert not set(train.queries) & set(test.queries)
        assert set(train.qrels) | set(test.qrels) == all_test
        assert test.split == "test" and train.split == f"test-cv3-train{fold}"
        tests.append(set(test.queries))
    assert set.union(*tests) == all_test and sum(map(len, tests)) == len(all_test)


def test_no_label_train_split_is_the_corpus_alone(tiny_data_root):
    (tiny_data_root / "tiny" / "qrels" / "train.tsv").unlink()  # a test-only collection, as Cranfield
    cfg = apply_overrides(ExperimentConfig(), {"data.dataset": "tiny", "data.data_root": str(tiny_data_root),
                                               "data.train_split": "none"})
    train = load_split(cfg, "train")
    assert train.split == "none" and not train.queries and not train.qrels and len(train.corpus) == 40
    assert set(load_split(cfg, "eval").qrels) == {f"q{i}" for i in range(0, 40, 4)}


def test_cv_settings_are_checked_when_parsed():
    from ragtune.config import ConfigError

    with pytest.raises(ConfigError, match="--data.cv_folds: must be 0 \\(no cross-validation\\) or >= 2, got 1"):
        apply_overrides(ExperimentConfig(), {"data.cv_folds": "1"})
    with pytest.raises(ConfigError, match="--data.cv_fold: must be < data.cv_folds \\(5\\), got 5"):
        apply_overrides(ExperimentConfig(), {"data.cv_folds": "5", "data.cv_fold": "5"})


def test_dev_holdout_is_the_seeded_tenth_one_inner_fold_or_nothing():
    from ragtune.data.folds import dev_holdout
    from ragtune.data.pairs import seeded_holdout

    qids = [f"q{i}" for i in range(23)]
    base = ExperimentConfig(task="adapter", seed=7)
    assert dev_holdout(base, qids) == seeded_holdout(qids, 0.1, 7)  # the default is unchanged
    dev_folds = [dev_holdout(apply_overrides(base, {"data.dev_folds": "4", "data.dev_fold": str(j)}), qids)
                 for j in range(4)]
    assert [dev for _, dev in dev_folds] == [sorted(f, key=qids.index) for f in query_folds(qids, 4, seed=7)]
    for train, dev in dev_folds:  # each: disjoint from its train part, together they cover every query
        assert not set(train) & set(dev) and sorted(train + dev) == sorted(qids)
    assert sorted(q for _, dev in dev_folds for q in dev) == sorted(qids)
    assert dev_holdout(apply_overrides(base, {"train.select": "last"}), qids) == (qids, [])


def test_dev_fold_settings_are_checked_when_parsed():
    from ragtune.config import ConfigError

    with pytest.raises(ConfigError, match="--data.dev_folds: must be 0 \\(the dev_fraction hold-out\\) or >= 2"):
        apply_overrides(ExperimentConfig(task="adapter"), {"data.dev_folds": "1"})
    with pytest.raises(ConfigError, match="--data.dev_fold: must be < data.dev_folds \\(3\\), got 3"):
        apply_overrides(ExperimentConfig(task="adapter"), {"data.dev_folds": "3", "data.dev_fold": "3"})
    tasks = "\\('adapter', 'biencoder', 'late_interaction', 'query_tower'\\)"
    with pytest.raises(ConfigError, match=f"--train.select: 'last' runs in the {tasks} tasks"):
        apply_overrides(ExperimentConfig(task="reranker"), {"train.select": "last"})
    with pytest.raises(ConfigError, match="--train.select: expected one of .*, got 'best'; did you mean 'best_dev'"):
        apply_overrides(ExperimentConfig(task="adapter"), {"train.select": "best"})
