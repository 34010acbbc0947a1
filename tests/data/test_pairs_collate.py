"""Training records, the unique-positive sampler and the group collator."""

import json

import pytest
import torch

from ragtune.data.beir import DataError
from ragtune.data.collate import GroupCollator, RecordDataset, UniquePositiveBatchSampler
from ragtune.data.pairs import TrainRecord, load_records, split_queries


def _write(tmp_path, rows):
    path = tmp_path / "pairs.jsonl"
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


def test_load_records_reads_ids_negatives_and_teacher_scores(tmp_path):
    path = _write(tmp_path, [{"qid": "1", "query": "q", "pos": "p", "pos_id": "d1", "negs": ["n1", "n2"],
                              "neg_ids": ["d2", "d3"], "neg_scores": [0.5, 0.4], "teacher_scores": [3, 1, -2]}])
    (record,) = load_records(path)
    assert record == TrainRecord(query="q", pos="p", negs=("n1", "n2"), qid="1", pos_id="d1",
                                 neg_ids=("d2", "d3"), teacher_scores=(3.0, 1.0, -2.0))


@pytest.mark.parametrize("rows,message", [
    ([{"query": "q", "pos": "p"}, '{"query": "q", "pos": '], r"pairs\.jsonl:2: malformed JSON"),
    ([{"query": "q"}], r"pairs\.jsonl:1: missing field\(s\) \['pos'\]"),
    ([{"query": "q", "pos": "p", "neg": ["x"]}], r"pairs\.jsonl:1: unknown field 'neg' \(did you mean 'negs'\?\)"),
    ([{"query": "q", "pos": "p", "negs": ["a"], "teacher_scores": [1.0]}],
     r"pairs\.jsonl:1: teacher_scores needs 1 \+ len\(negs\) = 2 values, got 1"),
    ([], r"no training records"),
])
def test_bad_records_name_file_line_and_field(tmp_path, rows, message):
    with pytest.raises(DataError, match=message):
        load_records(_write(tmp_path, rows))


def test_missing_training_file(tmp_path):
    with pytest.raises(DataError, match="training file not found: .*ragtune mine"):
        load_records(tmp_path / "nope.jsonl")


def test_dev_split_is_seeded_and_disjoint():
    qids = [str(i) for i in range(100)]
    a, b = split_queries(qids, 0.1, seed=3), split_queries(list(reversed(qids)), 0.1, seed=3)
    assert a == b and len(a.dev_qids) == 10 and not (a.dev_qids & a.train_qids)
    assert a.dev_qids | a.train_qids == set(qids)
    assert split_queries(qids, 0.1, seed=4).dev_qids != a.dev_qids


def test_sampler_never_repeats_a_positive_in_a_batch_and_is_deterministic():
    # 12 records but only 4 distinct positives: every batch of 4 must hold 4 different ones.
    records = [TrainRecord(query=f"q{i}", pos=f"p{i % 4}", pos_id=f"d{i % 4}") for i in range(12)]
    sampler = UniquePositiveBatchSampler(records, batch_size=4, seed=1)
    sampler.set_epoch(2)
    batches = list(sampler)
    assert len(batches) == 3 and sorted(i for b in batches for i, _ in b) == list(range(12))
    for batch in batches:
        assert len({records[i].pos_id for i, _ in batch}) == 4 and {e for _, e in batch} == {2}
    assert list(sampler) == batches  # same (seed, epoch): same order, so resume replays it
    sampler.set_epoch(3)
    assert [[i for i, _ in b] for b in sampler] != [[i for i, _ in b] for b in batches]


def test_collator_builds_the_group_layout():
    records = [TrainRecord(query="qa", pos="pa", negs=("na1", "na2", "na3"), teacher_scores=(9, 1, 2, 3)),
               TrainRecord(query="qb", pos="pb", negs=("nb1",), teacher_scores=(8, 4))]
    seen = {}

    def tokenize(texts, kind):
        seen[kind] = texts
        return {"input_ids": torch.zeros(len(texts), 1)}

    batch = GroupCollator(tokenize, num_negatives=2, seed=0)([RecordDataset(records)[(i, 0)] for i in range(2)])
    docs = seen["doc"]
    assert seen["query"] == ["qa", "qb"] and len(docs) == 6  # Q * G with G = 1 + 2
    assert docs[0] == "pa" and docs[3] == "pb"  # positive of query i at row i * G
    assert set(docs[1:3]) <= {"na1", "na2", "na3"} and docs[1] != docs[2]
    assert docs[4:6] == ["nb1", "nb1"]  # too few negatives: cycled
    teacher = batch["teacher"]
    assert teacher.shape == (2, 3) and teacher[1].tolist() == [8.0, 4.0, 4.0]
    assert teacher[0, 0] == 9.0 and teacher[0, 1].item() == {"na1": 1, "na2": 2, "na3": 3}[docs[1]]


def test_collator_refuses_records_without_negatives():
    collate = GroupCollator(lambda texts, kind: {}, num_negatives=1)
    with pytest.raises(ValueError, match="has no negatives"):
        collate([(TrainRecord(query="q", pos="p", qid="7"), 0)])


def test_seeded_holdout_sizes_order_and_bounds():
    import pytest

    from ragtune.data.pairs import seeded_holdout

    items = [f"x{i}" for i in range(10)]
    assert seeded_holdout(items, 0.0, seed=1) == (items, [])  # no dev: everything trains
    kept, held = seeded_holdout(items, 0.25, seed=1)
    assert len(held) == 2 and sorted(kept + held) == sorted(items)  # round(2.5) = 2
    assert kept == [x for x in items if x in kept] and held == [x for x in items if x in held]  # input order
    assert seeded_holdout(items, 0.25, seed=1) == (kept, held)  # deterministic in the seed
    assert len(seeded_holdout(items, 0.01, seed=1)[1]) == 1  # at least one when fraction > 0
    with pytest.raises(ValueError, match=r"\[0, 1\)"):
        seeded_holdout(items, 1.0, seed=1)


def _multi_positive_records():
    # q1 has 4 positives, q2 two, q3 one; positives are distinct documents
    rows = [("q1", f"a{i}") for i in range(4)] + [("q2", "b0"), ("q2", "b1"), ("q3", "c0")]
    return [TrainRecord(query=f"query {q}", pos=f"text {d}", qid=q, pos_id=d) for q, d in rows]


def test_per_query_sampling_gives_each_query_once_an_epoch_and_varies_the_positive():
    records = _multi_positive_records()
    sampler = UniquePositiveBatchSampler(records, batch_size=1, seed=3, drop_last=False, per_query=True)
    seen = []
    for epoch in range(40):
        sampler.set_epoch(epoch)
        batches = list(sampler)
        assert len(batches) == len(sampler) == 3  # one record per query, not 7
        qids = sorted(records[i].qid for batch in batches for i, _ in batch)
        assert qids == ["q1", "q2", "q3"]
        seen += [records[i].pos_id for batch in batches for i, _ in batch if records[i].qid == "q1"]
    assert set(seen) == {"a0", "a1", "a2", "a3"}  # every positive of q1 gets its turn
    again = UniquePositiveBatchSampler(records, batch_size=1, seed=3, drop_last=False, per_query=True)
    again.set_epoch(39)
    assert list(again) == batches  # (seed, epoch) alone fixes an epoch: resume replays it


def test_grade_weighted_per_query_sampling_follows_the_grades():
    records = [TrainRecord(query="q", pos=f"p{i}", qid="q", pos_id=f"d{i}") for i in range(2)]
    sampler = UniquePositiveBatchSampler(records, batch_size=1, seed=0, drop_last=False, per_query=True,
                                         weights=[3.0, 1.0])
    picks = []
    for epoch in range(4000):
        sampler.set_epoch(epoch)
        picks += [i for batch in sampler for i, _ in batch]
    assert picks.count(0) / len(picks) == pytest.approx(0.75, abs=0.02)


def test_collator_marks_known_positives_of_each_query_among_the_batch_documents():
    from ragtune.data.collate import known_positive_mask

    records = [TrainRecord(query="q1", pos="A", qid="q1", pos_id="a", negs=("B",), neg_ids=("b",)),
               TrainRecord(query="q2", pos="B", qid="q2", pos_id="b", negs=("C",), neg_ids=("c",)),
               TrainRecord(query="q3", pos="X", negs=("A",))]  # no ids: nothing to mask
    relevant = {"q1": {"a", "c"}, "q2": {"b"}}  # c (q2's negative) is also relevant to q1
    doc_index = {d: i for i, d in enumerate("abcx")}
    collate = GroupCollator(lambda texts, kind: {"n": len(texts)}, num_negatives=1, relevant=relevant,
                            doc_index=doc_index)
    batch = collate([(r, 0) for r in records])
    assert batch["d_index"].tolist() == [0, 1, 1, 2, -1, -1]  # rows: A B | B C | X A
    mask = known_positive_mask(batch["q_relevant"], batch["d_index"])
    assert mask.tolist() == [[True, False, False, True, False, False],   # q1: its own A, and C
                             [False, True, True, False, False, False],   # q2: B twice (its own + q1's negative)
                             [False, False, False, False, False, False]]  # q3: unknown ids
