"""Instruction records: JSONL errors with file:line, chat-template prompts, answer-only labels,
left-padded collation, the answer loss against a by-hand loop, length bucketing."""

from __future__ import annotations

import json
import math

import pytest
import torch

from ragtune.data.beir import DataError
from ragtune.data.instruct import (
    IGNORE,
    InstructRecord,
    LengthBucketSampler,
    answer_loss,
    collate_left,
    encode_record,
    load_instruct_records,
    prompt_ids,
    user_message,
    write_instruct_records,
)
from tests.models.test_generator import tiny_tokenizer

RECORD = InstructRecord(query="Claim : protein study", contexts=("protein data", "galaxy"), answer="[ 1 ]", id="q1")


def test_records_roundtrip_and_errors_name_file_and_line(tmp_path):
    path = write_instruct_records([RECORD, InstructRecord("q", (), "a")], tmp_path / "r.jsonl")
    assert load_instruct_records(path) == [RECORD, InstructRecord("q", (), "a", "")]
    bad = tmp_path / "bad.jsonl"
    good = json.dumps({"query": "q", "contexts": ["c"], "answer": "a"})
    for row, message in [({"query": "q", "contexts": ["c"]}, "answer"),
                         ({"query": "q", "contexts": "c", "answer": "a"}, "list of strings"),
                         ({"query": "q", "contexts": [], "answer": " "}, "non-empty"),
                         ({"query": "q", "contexts": [], "answer": "a", "context": []}, "unknown field 'context'")]:
        bad.write_text(good + "\n" + json.dumps(row) + "\n")
        with pytest.raises(DataError, match=rf"bad.jsonl:2.*{message}"):
            load_instruct_records(bad)
    with pytest.raises(DataError, match="not found"):
        load_instruct_records(tmp_path / "missing.jsonl")


def test_labels_are_ignore_exactly_on_prompt_tokens_and_the_chat_template_is_used():
    tok = tiny_tokenizer()
    ids, labels = encode_record(tok, RECORD, system_prompt="You answer strictly", instruction="Answer only")
    # The template, rendered by hand: '<|im_start|>role\ncontent<|im_end|>\n' per turn.
    prompt_text = ("<|im_start|>system\nYou answer strictly<|im_end|>\n"
                   "<|im_start|>user\nPassages:\n[1] protein data\n[2] galaxy\n\nClaim : protein study\n\nAnswer only"
                   "<|im_end|>\n<|im_start|>assistant\n")
    expected_prompt = tok(prompt_text, add_special_tokens=False)["input_ids"]
    expected_answer = tok("[ 1 ]<|im_end|>\n", add_special_tokens=False)["input_ids"]
    assert expected_answer == [tok.convert_tokens_to_ids(t) for t in ["[", "1", "]", "<|im_end|>"]]
    assert ids == expected_prompt + expected_answer
    assert labels == [IGNORE] * len(expected_prompt) + expected_answer
    assert prompt_ids(tok, RECORD, "You answer strictly", "Answer only") == expected_prompt
    assert user_message(RECORD) == "Passages:\n[1] protein data\n[2] galaxy\n\nClaim : protein study"
    assert user_message(RECORD, "Answer", query_first=True) == \
        "Claim : protein study\n\nPassages:\n[1] protein data\n[2] galaxy\n\nAnswer"
    ids_q, labels_q = encode_record(tok, RECORD, query_first=True)
    assert labels_q[-4:] == expected_answer and labels_q.count(IGNORE) == len(ids_q) - 4
    with pytest.raises(ValueError, match="max_length=5"):
        encode_record(tok, RECORD, max_length=5)


def test_collate_left_pads_and_keeps_the_answer_span():
    batch = collate_left([([5, 6, 7, 8], [IGNORE, IGNORE, 7, 8]), ([9, 10], [IGNORE, 10])], pad_id=0)
    assert batch["input_ids"].tolist() == [[5, 6, 7, 8], [0, 0, 9, 10]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1, 1], [0, 0, 1, 1]]
    assert batch["labels"].tolist() == [[IGNORE, IGNORE, 7, 8], [IGNORE, IGNORE, IGNORE, 10]]
    assert batch["keep"] == 3  # longest answer (2 tokens) + the position that predicts its first token


def test_answer_loss_matches_a_by_hand_loop():
    torch.manual_seed(0)
    labels = torch.tensor([[IGNORE, IGNORE, 3, 1], [IGNORE, IGNORE, IGNORE, 2]])
    full = torch.randn(2, 4, 5)  # (B, T, V)
    terms = []
    for b in range(2):
        for t in range(3):
            if labels[b, t + 1] != IGNORE:
                terms.append(-torch.log_softmax(full[b, t], -1)[labels[b, t + 1]].item())
    expected = sum(terms) / len(terms)
    assert len(terms) == 3
    assert answer_loss(full, labels).item() == pytest.approx(expected, abs=1e-6)
    assert answer_loss(full[:, -3:], labels).item() == pytest.approx(expected, abs=1e-6)  # last K=3 positions


def test_length_buckets_group_similar_lengths_deterministically():
    lengths = [(i * 37) % 101 for i in range(96)]
    sampler = LengthBucketSampler(lengths, batch_size=4, seed=1, bucket_size=6)
    batches = list(sampler)
    assert sorted(i for b in batches for i in b) == list(range(96)) and len(batches) == len(sampler) == 24
    spread = sum(max(lengths[i] for i in b) - min(lengths[i] for i in b) for b in batches) / len(batches)
    plain = LengthBucketSampler(lengths, batch_size=4, seed=1, bucket_size=0)
    plain_spread = sum(max(lengths[i] for i in b) - min(lengths[i] for i in b) for b in plain) / len(plain)
    # sorted windows of 24 lengths spread over ~0..100: a batch of 4 spans ~100 * 3/23, a random batch ~60
    assert spread < 20 < plain_spread
    assert list(LengthBucketSampler(lengths, 4, seed=1, bucket_size=6)) == batches  # same seed, same order
    sampler.set_epoch(1)
    assert list(sampler) != batches
    odd = LengthBucketSampler(list(range(10)), batch_size=4, seed=0, drop_last=True)
    assert len(odd) == 2 and all(len(b) == 4 for b in odd)
    assert len(LengthBucketSampler(list(range(10)), batch_size=4, seed=0)) == math.ceil(10 / 4)
