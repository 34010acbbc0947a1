from __future__ import annotations

import json

import pytest

from ragtune.config import DataConfig, ExperimentConfig, TrainConfig
from ragtune.data.beir import BeirDataset, Doc
from ragtune.data.pairs import TrainRecord, split_queries
from ragtune.tasks.biencoder import dev_split

CORPUS = {f"d{i}": Doc(title="", text=f"doc {i}") for i in range(10)}
TRAIN = BeirDataset(name="t", split="train", corpus=CORPUS,
                    queries={f"q{i}": f"query {i}" for i in range(10)},
                    qrels={f"q{i}": {f"d{i}": 1} for i in range(10)})
CFG = ExperimentConfig(task="biencoder", seed=3, data=DataConfig(dev_fraction=0.2))


def test_records_from_the_split_hold_out_split_queries():
    records = [TrainRecord(query="query 1", pos="doc 1", qid="q1", pos_id="d1")]
    source, dev = dev_split(records, TRAIN, CFG)
    assert source is TRAIN
    assert dev == set(split_queries(list(TRAIN.qrels), 0.2, 3).dev_qids) and len(dev) == 2


def test_synthetic_records_hold_out_whole_source_documents_from_the_file():
    # two synthetic queries per document: a document's queries are all dev or all train
    records = [TrainRecord(query=f"s{i}-{j}", pos=f"doc {i}", qid=f"s{i}-{j}", pos_id=f"d{i}")
               for i in range(10) for j in range(2)]
    source, dev = dev_split(records, TRAIN, CFG)
    assert set(source.queries) == {r.qid for r in records}  # no human query anywhere
    assert source.qrels["s4-1"] == {"d4": 1}
    dev_docs = {next(iter(source.qrels[q])) for q in dev}
    assert len(dev_docs) == 2 and len(dev) == 4
    assert all((f"s{d[1:]}-0" in dev) and (f"s{d[1:]}-1" in dev) for d in dev_docs)


def test_select_last_holds_nothing_out_and_dev_folds_hold_out_one_fold():
    records = [TrainRecord(query="query 1", pos="doc 1", qid="q1", pos_id="d1")]
    last = ExperimentConfig(task="biencoder", train=TrainConfig(select="last"))
    assert dev_split(records, TRAIN, last)[1] == set()
    folds = [dev_split(records, TRAIN, ExperimentConfig(task="biencoder", data=DataConfig(dev_folds=5, dev_fold=j)))[1]
             for j in range(5)]
    assert all(len(f) == 2 for f in folds) and set().union(*folds) == set(TRAIN.qrels)


def test_positive_lengths_count_the_tokens_the_encoder_sees(tiny_model_dir):
    from ragtune.config import ModelConfig
    from ragtune.models.encoder import Encoder
    from ragtune.tasks.biencoder import positive_lengths

    encoder = Encoder.from_config(ModelConfig(name=str(tiny_model_dir), doc_max_length=6, doc_prefix="p: "))
    records = [TrainRecord(query="q", pos=text) for text in ["a b", "a b c d e f g h i j"]]
    expected_short = len(encoder.tokenizer("p: a b")["input_ids"])  # [CLS] + prefix + text + [SEP]
    assert positive_lengths(encoder, records) == [expected_short, 6]  # the long one is cut at doc_max_length


def _with_own_dev(root, moved=("q1", "q2", "q3")):
    """The tiny set with three train queries moved from qrels/train.tsv to qrels/dev.tsv."""
    qrels = root / "tiny" / "qrels"
    lines = qrels.joinpath("train.tsv").read_text().splitlines()
    keep = [lines[0]] + [row for row in lines[1:] if row.split("\t")[0] not in moved]
    qrels.joinpath("train.tsv").write_text("\n".join(keep) + "\n")
    qrels.joinpath("dev.tsv").write_text("\n".join([lines[0]] + [r for r in lines[1:] if r.split("\t")[0] in moved])
                                         + "\n")


@pytest.mark.parametrize("task", ["biencoder", "adapter"])
def test_a_collection_with_its_own_dev_split_selects_on_it(tmp_path, subprocess_env, tiny_model_dir, tiny_data_root,
                                                           task):
    from tests.commands.test_run import run_entry

    _with_own_dev(tiny_data_root)
    out, proc = run_entry(tmp_path, subprocess_env, task, tiny_model_dir, tiny_data_root, "--train.epochs=1",
                          "--train.batch_size=4")
    timings = json.loads((out / "timings.json").read_text())
    assert timings["dev_source"] == "qrels/dev.tsv"
    if task == "biencoder":  # all 27 remaining train queries train; the 3 dev queries select
        assert "train records 27 (27 queries), dev queries 3" in proc.stdout
    else:
        assert timings["dev_queries"] == 3 and timings["train_queries"] == 27
    held, _ = run_entry(tmp_path, subprocess_env, task, tiny_model_dir, tiny_data_root, "--train.epochs=1",
                        "--train.batch_size=4", "--data.dev_split=holdout", "--overwrite")
    held_out = json.loads((held / "timings.json").read_text())["dev_source"]
    assert held_out == "0.2 of the train queries, held out (seed 7)"


def test_dev_folds_with_a_file_of_new_queries_is_refused_not_ignored():
    from ragtune.config import ConfigError, apply_overrides

    records = [TrainRecord(query=f"s{i}", pos=f"doc {i}", qid=f"s{i}", pos_id=f"d{i}") for i in range(10)]
    with pytest.raises(ConfigError, match="data.dev_folds: data.train_file holds queries that are not the split's"):
        dev_split(records, TRAIN, ExperimentConfig(task="biencoder", data=DataConfig(dev_folds=5)))
    with pytest.raises(ConfigError, match="--data.dev_folds: the adapter holds dev out of a data.train_file"):
        apply_overrides(ExperimentConfig(task="adapter"), {"data.dev_folds": "3", "data.train_file": "x.jsonl"})
