import json

import pytest

from ragtune.data.beir import DataError, load_beir, resolve_data_root


def _write(root, corpus_lines, queries_lines, qrels_lines, name="ds"):
    folder = root / name
    (folder / "qrels").mkdir(parents=True)
    (folder / "corpus.jsonl").write_text("\n".join(corpus_lines) + "\n")
    (folder / "queries.jsonl").write_text("\n".join(queries_lines) + "\n")
    (folder / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\n" + "\n".join(qrels_lines) + "\n")
    return root


DOCS = [json.dumps({"_id": "d1", "title": "T", "text": "one"}), json.dumps({"_id": "d2", "title": "", "text": "two"})]
QUERIES = [json.dumps({"_id": "q1", "text": "query one"}), json.dumps({"_id": "q2", "text": "query two"})]


def test_loads_split_and_limits_queries_to_qrels(tmp_path):
    root = _write(tmp_path, DOCS, QUERIES, ["q1\td1\t2"])
    ds = load_beir("ds", "test", str(root))
    assert ds.queries == {"q1": "query one"} and ds.qrels == {"q1": {"d1": 2}}
    assert ds.corpus["d1"].full_text() == "T one" and ds.corpus["d2"].full_text() == "two"


def test_malformed_json_names_file_and_line(tmp_path):
    root = _write(tmp_path, [DOCS[0], '{"_id": "d2", "text": "two"'], QUERIES, ["q1\td1\t1"])
    with pytest.raises(DataError, match=r"corpus\.jsonl:2: malformed JSON"):
        load_beir("ds", "test", str(root))


def test_unknown_ids_in_qrels_report_count_and_first_ids(tmp_path):
    root = _write(tmp_path, DOCS, QUERIES, ["q1\td9\t1", "q1\td8\t1", "q2\td1\t1"])
    with pytest.raises(DataError, match=r"test\.tsv: 2 doc id\(s\) not in corpus\.jsonl, first: \['d8', 'd9'\]"):
        load_beir("ds", "test", str(root))
    root2 = _write(tmp_path / "b", DOCS, QUERIES, ["q7\td1\t1"])
    with pytest.raises(DataError, match=r"1 query id\(s\) not in queries\.jsonl, first: \['q7'\]"):
        load_beir("ds", "test", str(root2))


def test_duplicate_ids_and_empty_texts_are_reported(tmp_path):
    root = _write(tmp_path, DOCS + [DOCS[0]], QUERIES, ["q1\td1\t1"])
    with pytest.raises(DataError, match=r"corpus\.jsonl:3: duplicate _id 'd1' \(first at line 1\)"):
        load_beir("ds", "test", str(root))
    root2 = _write(tmp_path / "b", DOCS + [json.dumps({"_id": "d3", "title": "", "text": " "})], QUERIES,
                   ["q1\td1\t1"])
    with pytest.warns(UserWarning, match=r"1 document\(s\) with empty title and text, e.g. \['d3'\]"):
        load_beir("ds", "test", str(root2))


def test_bad_qrels_row(tmp_path):
    root = _write(tmp_path, DOCS, QUERIES, ["q1\td1"])
    with pytest.raises(DataError, match=r"test\.tsv:2: expected 3 tab-separated columns"):
        load_beir("ds", "test", str(root))


def test_missing_dataset_says_where_it_looked_and_how_to_get_it(tmp_path):
    with pytest.raises(DataError) as err:
        load_beir("nope", "test", str(tmp_path))
    msg = str(err.value)
    assert str(tmp_path / "nope" / "corpus.jsonl") in msg and "RAGTUNE_DATA" in msg
    assert "python -m ragtune.data.download nope" in msg


def test_missing_split_lists_available(tmp_path):
    root = _write(tmp_path, DOCS, QUERIES, ["q1\td1\t1"])
    with pytest.raises(DataError, match=r"available splits: \['test'\]"):
        load_beir("ds", "dev", str(root))


def test_data_root_resolution(monkeypatch, tmp_path):
    monkeypatch.setenv("RAGTUNE_DATA", str(tmp_path))
    assert resolve_data_root() == tmp_path
    assert resolve_data_root("/x") == resolve_data_root("/x")


def test_download_fails_fast_offline(monkeypatch, tmp_path):
    import urllib.request

    from ragtune.data import download

    def refuse(*args, **kwargs):
        raise OSError("network unreachable")

    monkeypatch.setattr(urllib.request, "urlopen", refuse)
    with pytest.raises(DataError, match="could not download .*scifact.zip within 1s"):
        download.download_beir("scifact", str(tmp_path), timeout=1)


@pytest.mark.parametrize("target,line_no", [("corpus.jsonl", 2), ("queries.jsonl", 1), ("qrels/test.tsv", 2)])
def test_non_utf8_byte_names_file_line_and_column(tmp_path, target, line_no):
    # A Latin-1 'é' (0xe9) where UTF-8 was expected: the raw UnicodeDecodeError named neither file nor line.
    root = _write(tmp_path, DOCS, QUERIES, ["q1\td1\t1"])
    path = root / "ds" / target
    lines = path.read_bytes().split(b"\n")
    lines[line_no - 1] = lines[line_no - 1][:5] + b"\xe9" + lines[line_no - 1][5:]
    path.write_bytes(b"\n".join(lines))
    with pytest.raises(DataError) as err:
        load_beir("ds", "test", str(root))
    assert str(err.value) == f"{path}:{line_no}: not valid UTF-8 (byte 0xe9 at column 6); re-save the file as UTF-8"


def test_utf8_text_and_crlf_line_ends_still_load(tmp_path):
    root = _write(tmp_path, [json.dumps({"_id": "d1", "title": "Café", "text": "naïve"}, ensure_ascii=False)],
                  [json.dumps({"_id": "q1", "text": "crème"}, ensure_ascii=False)], ["q1\td1\t1"])
    qrels = root / "ds" / "qrels" / "test.tsv"
    qrels.write_bytes(qrels.read_bytes().replace(b"\n", b"\r\n"))
    ds = load_beir("ds", "test", str(root))
    assert ds.corpus["d1"].full_text() == "Café naïve" and ds.queries == {"q1": "crème"}
    assert ds.qrels == {"q1": {"d1": 1}}
