"""Inverse-cloze queries: sentence splits by hand, the query removed from its positive, seeded draws."""

from __future__ import annotations

from ragtune.data.beir import Doc
from ragtune.generation.corpus_queries import sentence_queries, split_sentences


def test_split_sentences_by_hand():
    text = "We used e.g. mice and rats. the flow . next one! Fig. 2 shows 0.5 mm. End"
    assert split_sentences(text) == ["We used e.g. mice and rats.", "the flow .", "next one!",
                                     "Fig. 2 shows 0.5 mm.", "End"]
    assert split_sentences("") == []


def corpus() -> dict:
    return {"a": Doc(title="Title A", text="One two three four. Five six seven eight. Nine ten."),
            "b": Doc(title="", text="Alpha beta gamma delta. Epsilon zeta eta theta."),
            "c": Doc(title="Only", text="A single sentence of many words here.")}


def test_the_query_sentence_leaves_its_positive():
    rows = sentence_queries(corpus(), per_doc=1, min_words=3, seed=0)
    assert [r["pos_id"] for r in rows] == ["a", "b"]  # c has no sentence left to be its positive
    by_doc = {r["pos_id"]: r for r in rows}
    a = by_doc["a"]
    assert a["query"] in {"One two three four.", "Five six seven eight."}  # "Nine ten." is under 3 words
    rest = [s for s in ["One two three four.", "Five six seven eight.", "Nine ten."] if s != a["query"]]
    assert a["pos"] == "Title A " + " ".join(rest)
    assert a["query"] not in a["pos"] and a["sample"] == 0
    b = by_doc["b"]
    assert b["pos"] == ({"Alpha beta gamma delta.", "Epsilon zeta eta theta."} - {b["query"]}).pop()


def test_several_per_document_share_one_positive_without_any_of_them():
    rows = sentence_queries(corpus(), per_doc=2, min_words=2, seed=1)
    a = [r for r in rows if r["pos_id"] == "a"]
    assert len(a) == 2 and [r["sample"] for r in a] == [0, 1] and a[0]["pos"] == a[1]["pos"]
    assert all(r["query"] not in a[0]["pos"] for r in a)
    assert not [r for r in rows if r["pos_id"] == "b"]  # 2 sentences: none would be left


def test_draws_are_seeded_per_document():
    big = {f"d{i}": Doc(title="", text=" ".join(f"Sentence {j} of doc {i}." for j in range(6)))
           for i in range(30)}
    assert sentence_queries(big, 1, 3, seed=4) == sentence_queries(big, 1, 3, seed=4)
    assert sentence_queries(big, 1, 3, seed=4) != sentence_queries(big, 1, 3, seed=5)
    # a document's draw does not depend on which others are in the subset
    full = {r["pos_id"]: r for r in sentence_queries(big, 1, 3, seed=4)}
    sub = sentence_queries(big, 1, 3, seed=4, max_docs=7)
    assert len(sub) == 7 and all(full[r["pos_id"]] == r for r in sub)
    assert [r["pos_id"] for r in sub] == sorted((r["pos_id"] for r in sub), key=list(big).index)
