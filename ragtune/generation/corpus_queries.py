"""Pseudo-queries cut from the corpus itself, with no generator: a document's sentences.

Inverse cloze (Lee et al. 2019, arXiv:1906.00300): a sentence of a document is the query and the
rest of the document is its positive. The sentence is removed from the positive, so the pair cannot
be matched by copying words: the model learns what the rest of a document says about it, in the
corpus's own vocabulary. Each chosen document gives `per_doc` sentences (seeded by (seed, doc id),
so one document's draw does not depend on the others) and one positive, the document with all of
them removed; documents with fewer than per_doc + 1 usable sentences give none.
"""

from __future__ import annotations

import random
import re

# A sentence ends at . ! or ? followed by white space, whatever the case of the next word: some
# collections are lower-cased (Cranfield). A period after a common abbreviation ends none.
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")
_ABBREVIATIONS = {"e.g.", "i.e.", "al.", "fig.", "figs.", "eq.", "eqs.", "vs.", "approx.", "ref.", "refs.", "no.",
                  "cf.", "resp.", "dr.", "mr.", "ms.", "st.", "vol.", "ca."}


def split_sentences(text: str) -> list[str]:
    sentences: list[str] = []
    for piece in _SENTENCE_END.split(text.strip()):
        if sentences and sentences[-1].split()[-1].lower() in _ABBREVIATIONS:
            sentences[-1] = f"{sentences[-1]} {piece}"
        elif piece:
            sentences.append(piece)
    return sentences


def sentence_queries(corpus: dict, per_doc: int, min_words: int, seed: int, max_docs: int = 0) -> list[dict]:
    """Rows {"query", "pos_id", "pos", "sample"}; `pos` is title + text without the query sentences.

    corpus: doc id -> Doc (title, text). max_docs > 0: a seeded random subset of the corpus.
    A sentence counts when it has at least `min_words` words.
    """
    doc_ids = list(corpus)
    if max_docs > 0:
        doc_ids = sorted(random.Random(seed).sample(doc_ids, min(max_docs, len(doc_ids))), key=doc_ids.index)
    rows = []
    for doc_id in doc_ids:
        doc = corpus[doc_id]
        sentences = split_sentences(doc.text)
        usable = [i for i, s in enumerate(sentences) if len(s.split()) >= min_words]
        if len(usable) < per_doc or len(sentences) < per_doc + 1:
            continue
        chosen = sorted(random.Random(f"{seed}:{doc_id}").sample(usable, per_doc))
        rest = " ".join(s for i, s in enumerate(sentences) if i not in chosen)
        positive = f"{doc.title} {rest}".strip() if doc.title else rest
        rows.extend({"query": sentences[i], "pos_id": doc_id, "pos": positive, "sample": j}
                    for j, i in enumerate(chosen))
    return rows
