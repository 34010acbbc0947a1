"""Cross-encoder: pair formatting and truncation, HF export round trip, and a tiny model that learns."""

from __future__ import annotations

import random

import pytest
import torch
from transformers import (
    AutoModelForSequenceClassification,
    BertConfig,
    BertForSequenceClassification,
    BertTokenizerFast,
)

from ragtune.data.beir import Doc
from ragtune.losses import listwise_ce
from ragtune.models.cross_encoder import CrossEncoder, format_doc

WORDS = [f"w{i}" for i in range(40)]


def tiny_cross_encoder(max_length: int = 24, query_max_length: int = 6) -> CrossEncoder:
    """A random 2-layer BERT with a one-logit head and a word-level vocab, built in-process."""
    vocab = {t: i for i, t in enumerate(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS])}
    tokenizer = BertTokenizerFast(vocab=vocab, do_lower_case=True)
    torch.manual_seed(0)
    config = BertConfig(vocab_size=len(WORDS) + 5, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=64, num_labels=1)
    ce = CrossEncoder(BertForSequenceClassification(config), tokenizer, max_length=max_length,
                      query_max_length=query_max_length)
    return ce.eval()  # no dropout: logits are compared exactly


def test_format_doc_template_and_missing_title():
    assert format_doc(Doc("T", "body"), "{title}. {text}") == "T. body"
    assert format_doc(Doc("T", "body")) == "T body"
    assert format_doc(Doc("", "body"), "{title}. {text}") == "body"  # no dangling ". "


def test_truncation_keeps_query_and_cuts_document():
    ce = tiny_cross_encoder(max_length=12, query_max_length=6)
    tok = ce.tokenizer
    batch = ce.tokenize(["w1 w2 w3", "w1 w2 w3 w4 w5 w6 w7 w8"], ["w9 " * 20, "w10 w11"])
    ids = batch["input_ids"].tolist()
    # [CLS] w1 w2 w3 [SEP] + 6 doc tokens + [SEP] = 12: the query whole, the document cut.
    assert tok.convert_ids_to_tokens(ids[0]) == ["[CLS]", "w1", "w2", "w3", "[SEP]", *["w9"] * 6, "[SEP]"]
    # An over-long query is cut to query_max_length=6 tokens first, so the document still fits.
    assert tok.convert_ids_to_tokens(ids[1])[:11] == ["[CLS]", "w1", "w2", "w3", "w4", "w5", "w6", "[SEP]",
                                                      "w10", "w11", "[SEP]"]
    assert batch["token_type_ids"][0].tolist() == [0] * 5 + [1] * 7  # segment B = the document


def test_query_longer_than_max_length_is_an_error():
    with pytest.raises(ValueError, match="no room for the document"):
        tiny_cross_encoder(max_length=8, query_max_length=6)


def test_score_matches_forward_in_input_order():
    ce = tiny_cross_encoder()
    queries, docs = ["w1", "w2 w3", "w4"], ["w5 w6 w7 w8 w9", "w10", "w11 w12"]
    scores = ce.score(queries, docs, batch_size=2)  # length-sorted batches, results back in order
    with torch.no_grad():
        expected = [ce(**ce.tokenize([q], [d])).item() for q, d in zip(queries, docs, strict=True)]
    assert scores.tolist() == pytest.approx(expected, abs=1e-5)


def test_export_reloads_as_hf_sequence_classifier_with_same_logits(tmp_path):
    ce = tiny_cross_encoder()
    ce.doc_template = "{title}: {text}"
    ce.save(tmp_path / "out")
    batch = ce.tokenize(["w1 w2", "w3"], ["w4 w5 w6", "w7"])
    with torch.no_grad():
        expected = ce(**batch)  # (B,)
        hf = AutoModelForSequenceClassification.from_pretrained(tmp_path / "out").eval()
        assert hf.config.num_labels == 1
        assert torch.allclose(hf(**batch).logits.squeeze(-1), expected, atol=1e-6)
    again = CrossEncoder.from_pretrained(str(tmp_path / "out"))
    assert (again.max_length, again.query_max_length, again.doc_template) == (24, 6, "{title}: {text}")
    assert again.score(["w1 w2", "w3"], ["w4 w5 w6", "w7"]).tolist() == pytest.approx(expected.tolist(), abs=1e-5)


def synthetic_groups(n: int, group_size: int, seed: int) -> list[tuple[str, list[str]]]:
    """Relevant documents use the first half of the vocabulary, negatives the second half;
    queries are words of the first half. Learnable from a few dozen steps by a 2-layer model
    (exact-match signals need thousands), which is all a unit test can afford on CPU."""
    rng = random.Random(seed)
    relevant, other = WORDS[:20], WORDS[20:]
    return [(rng.choice(relevant), [" ".join(rng.sample(relevant, 3)),
                                    *(" ".join(rng.sample(other, 3)) for _ in range(group_size - 1))])
            for _ in range(n)]


def top1_accuracy(ce: CrossEncoder, groups) -> float:
    """Share of groups whose positive (column 0) gets the highest score."""
    return sum(int(ce.score([q] * len(docs), docs).argmax() == 0) for q, docs in groups) / len(groups)


def test_tiny_reranker_learns_to_order_positives_above_negatives():
    torch.manual_seed(0)
    ce = tiny_cross_encoder()
    group_size = 4
    held_out = synthetic_groups(40, group_size, seed=1)
    before = top1_accuracy(ce, held_out)
    opt = torch.optim.AdamW(ce.parameters(), lr=2e-3)
    ce.train()
    losses = []
    for step in range(25):
        groups = synthetic_groups(8, group_size, seed=100 + step)
        batch = ce.tokenize([q for q, docs in groups for _ in docs], [d for _, docs in groups for d in docs])
        loss = listwise_ce(ce(**batch).view(-1, group_size))  # (Q, G), positive in column 0
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    after = top1_accuracy(ce, held_out)
    # Chance is 1/4 (loss ln 4 = 1.386); the untrained model is near it, the trained one far above.
    assert before < 0.5
    assert after >= 0.9, (before, after)
    assert losses[0] == pytest.approx(1.386, abs=0.05) and losses[-1] < 0.5
