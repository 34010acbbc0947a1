"""Instruction-tuning records for a causal-LM generator: JSONL I/O, chat prompts, answer-only labels.

A record is one line
    {"query": "...", "contexts": ["passage", ...], "answer": "...", "id": "optional"}
The user turn shows the contexts numbered [1]..[k], then the query (then an optional task
instruction); the assistant turn is the answer. Prompts go through the tokenizer's chat
template, and the loss sees only the answer: every prompt and padding label is -100.

Batches are LEFT-padded, so every answer ends at the last position and the model only needs
logits for the last K positions (`logits_to_keep`): with a 49k vocabulary the (B, T, V)
logits would be most of a step's time and memory. Rotary positions are relative, so the
shift left padding causes changes nothing but rounding.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils.data import Sampler

from ragtune.data.beir import DataError, read_jsonl
from ragtune.data.collate import sort_within_windows

IGNORE = -100  # label of positions the loss skips (torch cross_entropy's ignore_index)
_FIELDS = {"query", "contexts", "answer", "id"}


@dataclass(frozen=True)
class InstructRecord:
    query: str
    contexts: tuple[str, ...]
    answer: str
    id: str = ""


def load_instruct_records(path: str | Path) -> list[InstructRecord]:
    """Read a records JSONL file; every problem is reported as file:line."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"instruction records file not found: {path}")
    records = []
    for line_no, row in read_jsonl(path, ("query", "contexts", "answer")):
        where = f"{path}:{line_no}"
        unknown = sorted(set(row) - _FIELDS)
        if unknown:
            raise DataError(f"{where}: unknown field '{unknown[0]}'; known: {sorted(_FIELDS)}")
        for key in ("query", "answer"):
            if not isinstance(row[key], str) or not row[key].strip():
                raise DataError(f"{where}: '{key}' must be a non-empty string, got {row[key]!r}")
        contexts = row["contexts"]
        if not isinstance(contexts, list) or not all(isinstance(c, str) for c in contexts):
            raise DataError(f"{where}: 'contexts' must be a list of strings")
        records.append(InstructRecord(row["query"], tuple(contexts), row["answer"], str(row.get("id", ""))))
    if not records:
        raise DataError(f"{path}: no records")
    return records


def write_instruct_records(records: list[InstructRecord], path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps({"id": r.id, "query": r.query, "contexts": list(r.contexts),
                                        "answer": r.answer}) + "\n" for r in records))
    return path


def user_message(record: InstructRecord, instruction: str = "", query_first: bool = False) -> str:
    """Numbered contexts, then the query, then the instruction.

    query_first puts the query before the contexts: a causal LM then reads every passage
    already knowing what it is looking for (its passage states can attend to the query).
    """
    passages = "\n".join(f"[{i}] {c}" for i, c in enumerate(record.contexts, start=1))
    parts = [f"Passages:\n{passages}"] if record.contexts else []
    parts = [record.query] + parts if query_first else parts + [record.query]
    return "\n\n".join(parts + ([instruction] if instruction else []))


def messages(record: InstructRecord, system_prompt: str = "", instruction: str = "",
             query_first: bool = False) -> list[dict]:
    system = [{"role": "system", "content": system_prompt}] if system_prompt else []
    return system + [{"role": "user", "content": user_message(record, instruction, query_first)}]


def _ids(tokenizer, chat: list[dict], add_generation_prompt: bool) -> list[int]:
    out = tokenizer.apply_chat_template(chat, add_generation_prompt=add_generation_prompt, tokenize=True)
    return list(out["input_ids"] if isinstance(out, dict) or hasattr(out, "keys") else out)


def prompt_ids(tokenizer, record: InstructRecord, system_prompt: str = "", instruction: str = "",
               query_first: bool = False) -> list[int]:
    """Chat-template ids of the prompt, ending with the assistant header (what generation starts from)."""
    return _ids(tokenizer, messages(record, system_prompt, instruction, query_first), add_generation_prompt=True)


def encode_record(tokenizer, record: InstructRecord, system_prompt: str = "", instruction: str = "",
                  max_length: int = 0, query_first: bool = False) -> tuple[list[int], list[int]]:
    """(input_ids, labels) of prompt + answer; labels are IGNORE on every prompt token.

    The answer's tokens are what the template appends after the prompt (the answer, its
    end-of-turn token and whatever the template closes a turn with), so the model learns to stop.
    """
    prompt = prompt_ids(tokenizer, record, system_prompt, instruction, query_first)
    chat = messages(record, system_prompt, instruction, query_first) + [{"role": "assistant", "content": record.answer}]
    full = _ids(tokenizer, chat, add_generation_prompt=False)
    if full[: len(prompt)] != prompt:
        raise ValueError(f"record {record.id!r}: the chat template renders the prompt differently with and "
                         "without the answer, so answer tokens cannot be located")
    if max_length and len(full) > max_length:
        raise ValueError(f"record {record.id!r}: {len(full)} tokens > max_length={max_length} "
                         "(shorten the contexts or raise generator.max_length)")
    return full, [IGNORE] * len(prompt) + full[len(prompt):]


def collate_left(examples: list[tuple[list[int], list[int]]], pad_id: int) -> dict[str, torch.Tensor | int]:
    """Left-pad (input_ids, labels) pairs -> input_ids/attention_mask/labels (B, T) and keep (int).

    `keep` = longest labelled span + 1: the logits of the last `keep` positions cover every
    answer token's prediction (position t predicts token t + 1).
    """
    length = max(len(ids) for ids, _ in examples)
    input_ids = torch.full((len(examples), length), pad_id, dtype=torch.long)
    attention = torch.zeros_like(input_ids)
    labels = torch.full_like(input_ids, IGNORE)
    keep = 1
    for i, (ids, lab) in enumerate(examples):
        input_ids[i, length - len(ids):] = torch.tensor(ids)
        attention[i, length - len(ids):] = 1
        labels[i, length - len(lab):] = torch.tensor(lab)
        first = next((j for j, v in enumerate(lab) if v != IGNORE), len(lab))
        keep = max(keep, len(lab) - first + 1)
    return {"input_ids": input_ids, "attention_mask": attention, "labels": labels, "keep": keep}


def answer_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean next-token cross-entropy over answer tokens only.

        loss = - 1/N sum_{(b,t): labels[b,t+1] != -100} log softmax(logits[b,t])[labels[b,t+1]]

    logits (B, K, V) are the LAST K positions of the sequence, labels (B, T) the full labels;
    position t predicts token t + 1, so logits[:, :-1] pair with labels[:, T-K+1:].
    """
    k = logits.shape[1]
    target = labels[:, labels.shape[1] - k + 1:]  # (B, K-1)
    return F.cross_entropy(logits[:, :-1].float().reshape(-1, logits.shape[-1]), target.reshape(-1),
                           ignore_index=IGNORE)


class LengthBucketSampler(Sampler[list[int]]):
    """Shuffled batches of record indices where each batch holds similar lengths (less padding).

    The seeded shuffle is cut into windows of bucket_size * batch_size records, each sorted by
    length and cut into batches; the batches are then shuffled so long and short ones
    alternate. The order depends only on (seed, epoch), so a resumed run replays it.
    bucket_size = 0 is a plain shuffle.
    """

    def __init__(self, lengths: list[int], batch_size: int, seed: int, bucket_size: int = 8,
                 drop_last: bool = False):
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.lengths, self.batch_size, self.seed = list(lengths), batch_size, seed
        self.bucket_size, self.drop_last, self.epoch = bucket_size, drop_last, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _batches(self) -> list[list[int]]:
        rng = random.Random(self.seed * 100_003 + self.epoch)
        order = list(range(len(self.lengths)))
        rng.shuffle(order)
        if self.bucket_size > 0:
            order = sort_within_windows(order, self.lengths, self.bucket_size * self.batch_size)
        batches = [order[s:s + self.batch_size] for s in range(0, len(order), self.batch_size)]
        if self.drop_last and batches and len(batches[-1]) < self.batch_size:
            batches.pop()
        if self.bucket_size > 0:
            rng.shuffle(batches)
        return batches

    def __iter__(self) -> Iterator[list[int]]:
        return iter(self._batches())

    def __len__(self) -> int:
        n = len(self.lengths)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)
