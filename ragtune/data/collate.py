"""Batching for contrastive training: a sampler without duplicate positives, and the group collator.

The group layout is defined in ragtune/losses.py: documents are `[pos, neg_1..neg_k]` per query,
so the collated `d` holds Q * group_size rows and query i's positive is row i * group_size.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator

import torch
from torch.utils.data import Dataset, Sampler

from ragtune.data.pairs import TrainRecord


class RecordDataset(Dataset):
    """Indexed by (i, epoch) pairs from the sampler, so the collator knows the epoch."""

    def __init__(self, records: list[TrainRecord]):
        self.records = records

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, key: tuple[int, int]) -> tuple[TrainRecord, int]:
        i, epoch = key
        return self.records[i], epoch


def sort_within_windows(order: list[int], lengths: list[int], window: int, descending: bool = False) -> list[int]:
    """`order` cut into consecutive windows of `window` indices, each sorted by lengths[i]. The sort
    is stable, so ties keep their (shuffled) order; the length-bucketing step of both samplers."""
    sign = -1 if descending else 1
    return [i for s in range(0, len(order), window)
            for i in sorted(order[s:s + window], key=lambda i: sign * lengths[i])]


class UniquePositiveBatchSampler(Sampler[list[tuple[int, int]]]):
    """Shuffled batches of (index, epoch) in which no positive (by pos_id, else text) appears twice.

    Two queries sharing a positive in one batch would make that document a false in-batch
    negative for one of them. A record that collides is deferred to the next batch that has
    room. The order depends only on (seed, epoch): resuming mid-epoch replays it exactly.

    Length bucketing (`lengths` per record, e.g. positive token counts, and `bucket_size` > 0):
    the shuffled order is cut into windows of bucket_size * batch_size records, each sorted by
    length before packing, so a batch holds similar lengths and pads less; the batches are then
    shuffled, so long and short batches still alternate. Same guarantees, same determinism.
    """

    def __init__(self, records: list[TrainRecord], batch_size: int, seed: int, drop_last: bool = True,
                 lengths: list[int] | None = None, bucket_size: int = 0):
        if lengths is not None and len(lengths) != len(records):
            raise ValueError(f"lengths has {len(lengths)} entries for {len(records)} records")
        if bucket_size > 0 and lengths is None:
            raise ValueError("bucket_size > 0 needs the records' lengths")
        self.keys = [r.pos_id or r.pos for r in records]
        self.batch_size, self.seed, self.drop_last = batch_size, seed, drop_last
        self.lengths, self.bucket_size = lengths, bucket_size
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _batches(self) -> list[list[int]]:
        order = list(range(len(self.keys)))
        rng = random.Random(self.seed * 100_003 + self.epoch)
        rng.shuffle(order)
        if self.bucket_size > 0:
            order = sort_within_windows(order, self.lengths, self.bucket_size * self.batch_size, descending=True)
        batches: list[list[int]] = []
        open_batches: list[tuple[list[int], set[str]]] = []
        for i in order:
            for batch, keys in open_batches:  # first batch with room and no clash
                if self.keys[i] not in keys:
                    batch.append(i)
                    keys.add(self.keys[i])
                    break
            else:
                open_batches.append(([i], {self.keys[i]}))
            if len(open_batches[0][0]) == self.batch_size:
                batches.append(open_batches.pop(0)[0])
        leftovers = [b for b, _ in open_batches]
        if not self.drop_last:
            batches.extend(b for b in leftovers if b)
        if self.bucket_size > 0:
            rng.shuffle(batches)  # else every window would run longest batch first
        return batches

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        return iter([[(i, self.epoch) for i in batch] for batch in self._batches()])

    def __len__(self) -> int:
        return len(self._batches())


class GroupCollator:
    """(record, epoch) items -> {'q': tokens (Q, Tq), 'd': tokens (Q*G, Td), 'teacher': (Q, G) or absent}.

    Each record contributes its positive and `num_negatives` of its negatives, drawn with an
    RNG seeded by (seed, epoch, record text) so a resumed run draws the same ones. Records
    with fewer negatives than asked repeat theirs (cycling); none at all is an error, since
    the group layout needs a fixed group size.
    """

    def __init__(self, tokenize: Callable[[list[str], str], dict], num_negatives: int, seed: int = 0):
        self.tokenize, self.num_negatives, self.seed = tokenize, num_negatives, seed

    def _negatives(self, record: TrainRecord, epoch: int) -> list[int]:
        if self.num_negatives == 0:
            return []
        if not record.negs:
            raise ValueError(f"data.num_negatives={self.num_negatives} but the record for query "
                             f"{record.qid or record.query[:40]!r} has no negatives (mine with experiments/mine.py)")
        rng = random.Random(f"{self.seed}-{epoch}-{record.qid}-{record.pos_id}-{record.query}")
        picks = rng.sample(range(len(record.negs)), min(self.num_negatives, len(record.negs)))
        while len(picks) < self.num_negatives:
            picks.append(picks[len(picks) % len(record.negs)])
        return picks

    def __call__(self, items: list[tuple[TrainRecord, int]]) -> dict:
        docs, teacher = [], []
        records = [record for record, _ in items]
        for record, epoch in items:
            picks = self._negatives(record, epoch)
            docs.append(record.pos)
            docs.extend(record.negs[i] for i in picks)
            if record.teacher_scores:
                teacher.append([record.teacher_scores[0]] + [record.teacher_scores[1 + i] for i in picks])
        batch = {"q": self.tokenize([r.query for r in records], "query"), "d": self.tokenize(docs, "doc")}
        if teacher:
            if len(teacher) != len(records):
                raise ValueError("some records have teacher_scores and some do not")
            batch["teacher"] = torch.tensor(teacher, dtype=torch.float32)  # (Q, G)
        return batch
