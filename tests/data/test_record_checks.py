"""Field validation of training-record files, and the up-front check for missing negatives."""

import json

import pytest

from ragtune.data.beir import DataError
from ragtune.data.pairs import TrainRecord, check_negatives, load_records, records_from_qrels


def _write(tmp_path, rows):
    path = tmp_path / "pairs.jsonl"
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


def _error(tmp_path, rows) -> str:
    path = _write(tmp_path, rows)
    with pytest.raises(DataError) as err:
        load_records(path)
    prefix = f"{path}:"
    assert str(err.value).startswith(prefix)
    return str(err.value)[len(prefix):]


OK = {"query": "q", "pos": "p"}


@pytest.mark.parametrize("extra,message", [
    # A string `negs` used to become one negative per character, and the run exited 0.
    ({"negs": "a string"}, "field 'negs' must be a list of strings, got string \"a string\""),
    ({"negs": ["n1", 5]}, "field 'negs' must be a list of strings, got integer 5 at index 1"),
    ({"negs": None}, "field 'negs' must be a list of strings, got null"),
    ({"query": ""}, "field 'query' must be a non-empty string, got string \"\""),
    ({"pos": ["p"]}, "field 'pos' must be a non-empty string, got list [\"p\"]"),
    ({"qid": {"id": 1}}, "field 'qid' must be a string or integer, got object {\"id\": 1}"),
    ({"negs": ["n"], "neg_ids": "d1"}, "field 'neg_ids' must be a list of strings or integers, got string \"d1\""),
    ({"negs": ["n"], "teacher_scores": [1, "2"]},
     "field 'teacher_scores' must be a list of numbers, got string \"2\" at index 1"),
    ({"negs": ["n"], "teacher_scores": [1.0, True]},
     "field 'teacher_scores' must be a list of numbers, got boolean true at index 1"),
    ({"negs": ["n1", "n2"], "neg_ids": ["d1"]}, "neg_ids needs len(negs) = 2 values, got 1"),
    ({"negs": ["n1"], "neg_scores": [0.5, 0.4]}, "neg_scores needs len(negs) = 1 values, got 2"),
    ({"negz": ["n1"]}, "unknown field 'negz' (did you mean 'negs'?); known: "
                       "['neg_ids', 'neg_scores', 'negs', 'pos', 'pos_id', 'qid', 'query', 'teacher_scores']"),
])
def test_bad_field_names_line_field_expected_and_found(tmp_path, extra, message):
    assert _error(tmp_path, [OK, {**OK, **extra}]) == f"2: {message}"


def test_long_bad_values_are_shortened(tmp_path):
    assert _error(tmp_path, [{**OK, "negs": "x" * 100}]) == \
        f"1: field 'negs' must be a list of strings, got string \"{'x' * 36}..."


def test_non_utf8_training_file_names_line_and_column(tmp_path):
    path = tmp_path / "pairs.jsonl"
    path.write_bytes(json.dumps(OK).encode() + b"\n" + b'{"query": "caf\xe9", "pos": "p"}\n')
    with pytest.raises(DataError) as err:
        load_records(path)
    assert str(err.value) == f"{path}:2: not valid UTF-8 (byte 0xe9 at column 15); re-save the file as UTF-8"


def test_valid_ids_are_strings_and_records_remember_their_line(tmp_path):
    records = load_records(_write(tmp_path, ["", {**OK, "qid": 7, "pos_id": 8, "negs": ["n"], "neg_ids": [9]}]))
    assert records == [TrainRecord(query="q", pos="p", negs=("n",), qid="7", pos_id="8", neg_ids=("9",))]
    assert records[0].line == 2  # line numbers count the blank line: they point at the file's row


def test_check_negatives_names_source_count_and_first_record(tmp_path):
    path = _write(tmp_path, [{**OK, "negs": ["n"]}, {**OK, "qid": "q2"}, {**OK, "negs": ["n"]}, {**OK, "qid": "q4"}])
    records = load_records(path)
    with pytest.raises(DataError) as err:
        check_negatives(records, num_negatives=2, source=str(path))
    assert str(err.value) == (f"{path}: 2 of 4 record(s) have no negatives but data.num_negatives=2; first: line 2 "
                              f"(qid 'q2'). Add 'negs' (`ragtune mine` writes them) or set data.num_negatives=0")


def test_check_negatives_without_lines_names_the_record_and_passes_when_not_needed():
    records = [TrainRecord(query="q", pos="p", negs=("n",)), TrainRecord(query="q", pos="p")]
    with pytest.raises(DataError, match=r"^qrels of tiny/train: 1 of 2 record\(s\) .*; first: record 2\. Add"):
        check_negatives(records, 1, "qrels of tiny/train")
    assert check_negatives(records, 0, "qrels of tiny/train") is None  # no negatives asked for
    assert check_negatives(records[:1], 1, "x") is None


def test_records_from_qrels_still_construct(tiny_data_root):
    from ragtune.data.beir import load_beir

    records = records_from_qrels(load_beir("tiny", "train", str(tiny_data_root)))
    assert records and all(r.line == 0 and not r.negs for r in records)
