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

    Per-query sampling (`per_query=True`, for queries with many positives): an epoch holds each
    query once (records grouped by qid; a record without one is its own query), with one of its
    records drawn by the epoch's RNG, in proportion to `weights` (e.g. the positives' grades) when
    given. So a query with 40 positives weighs as much as one with a single positive, and an
    epoch is as long as the number of queries.
    """

    def __init__(self, records: list[TrainRecord], batch_size: int, seed: int, drop_last: bool = True,
                 lengths: list[int] | None = None, bucket_size: int = 0, per_query: bool = False,
                 weights: list[float] | None = None):
        if lengths is not None and len(lengths) != len(records):
            raise ValueError(f"lengths has {len(lengths)} entries for {len(records)} records")
        if bucket_size > 0 and lengths is None:
            raise ValueError("bucket_size > 0 needs the records' lengths")
        if weights is not None and (len(weights) != len(records) or min(weights, default=1) <= 0):
            raise ValueError("weights needs one positive weight per record")
        self.keys = [r.pos_id or r.pos for r in records]
        self.batch_size, self.seed, self.drop_last = batch_size, seed, drop_last
        self.lengths, self.bucket_size = lengths, bucket_size
        self.groups: list[list[int]] | None = None
        if per_query:
            by_query: dict[str, list[int]] = {}
            for i, r in enumerate(records):
                by_query.setdefault(r.qid or f"#record-{i}", []).append(i)
            self.groups = list(by_query.values())
        self.weights = weights
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _order(self, rng: random.Random) -> list[int]:
        """This epoch's record indices: all of them shuffled, or one per query (per_query)."""
        if self.groups is None:
            order = list(range(len(self.keys)))
            rng.shuffle(order)
            return order
        groups = list(self.groups)
        rng.shuffle(groups)
        if self.weights is None:
            return [group[rng.randrange(len(group))] for group in groups]
        return [rng.choices(group, weights=[self.weights[i] for i in group])[0] for group in groups]

    def _batches(self) -> list[list[int]]:
        rng = random.Random(self.seed * 100_003 + self.epoch)
        order = self._order(rng)
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


def known_positive_mask(q_relevant: torch.Tensor, d_index: torch.Tensor) -> torch.Tensor:
    """(Q, R) corpus indices relevant to each query (-1 padding), (D,) corpus index of each document
    row (-1: a document without an id) -> (Q, D) bool, True where row j is labelled relevant to query i."""
    hits = d_index[None, :, None] == q_relevant[:, None, :]  # (Q, D, R)
    return hits.any(dim=-1) & (d_index >= 0)[None, :]


class GroupCollator:
    """(record, epoch) items -> {'q': tokens (Q, Tq), 'd': tokens (Q*G, Td), 'teacher': (Q, G) or absent}.

    Each record contributes its positive and `num_negatives` of its negatives, drawn with an
    RNG seeded by (seed, epoch, record text) so a resumed run draws the same ones. Records
    with fewer negatives than asked repeat theirs (cycling); none at all is an error, since
    the group layout needs a fixed group size.

    With `relevant` ({qid: doc ids labelled relevant}) and `doc_index` ({doc id: int}), the batch
    also holds 'q_relevant' (Q, R) and 'd_index' (Q*G,) for `known_positive_mask`: the loss then
    never counts a document the qrels call relevant to a query as that query's negative.
    """

    def __init__(self, tokenize: Callable[[list[str], str], dict], num_negatives: int, seed: int = 0,
                 relevant: dict[str, set[str]] | None = None, doc_index: dict[str, int] | None = None):
        self.tokenize, self.num_negatives, self.seed = tokenize, num_negatives, seed
        self.relevant, self.doc_index = relevant, doc_index

    def _negatives(self, record: TrainRecord, epoch: int) -> list[int]:
        if self.num_negatives == 0:
            return []
        if not record.negs:
            raise ValueError(f"data.num_negatives={self.num_negatives} but the record for query "
                             f"{record.qid or record.query[:40]!r} has no negatives (mine with `ragtune mine`)")
        rng = random.Random(f"{self.seed}-{epoch}-{record.qid}-{record.pos_id}-{record.query}")
        picks = rng.sample(range(len(record.negs)), min(self.num_negatives, len(record.negs)))
        while len(picks) < self.num_negatives:
            picks.append(picks[len(picks) % len(record.negs)])
        return picks

    def _relevance(self, records: list[TrainRecord], doc_ids: list[str]) -> dict[str, torch.Tensor]:
        index = self.doc_index
        relevant = [sorted(index[d] for d in set(self.relevant.get(r.qid, ())) | {r.pos_id} if d in index)
                    for r in records]
        width = max(1, max(map(len, relevant)))
        q_relevant = torch.full((len(records), width), -1, dtype=torch.long)
        for i, rows in enumerate(relevant):
            q_relevant[i, :len(rows)] = torch.tensor(rows, dtype=torch.long)
        d_index = torch.tensor([index.get(d, -1) for d in doc_ids], dtype=torch.long)
        return {"q_relevant": q_relevant, "d_index": d_index}

    def __call__(self, items: list[tuple[TrainRecord, int]]) -> dict:
        docs, doc_ids, teacher = [], [], []
        records = [record for record, _ in items]
        for record, epoch in items:
            picks = self._negatives(record, epoch)
            docs.append(record.pos)
            docs.extend(record.negs[i] for i in picks)
            doc_ids.append(record.pos_id)
            doc_ids.extend(record.neg_ids[i] if i < len(record.neg_ids) else "" for i in picks)
            if record.teacher_scores:
                teacher.append([record.teacher_scores[0]] + [record.teacher_scores[1 + i] for i in picks])
        batch = {"q": self.tokenize([r.query for r in records], "query"), "d": self.tokenize(docs, "doc")}
        if self.relevant is not None and self.doc_index is not None:
            batch.update(self._relevance(records, doc_ids))
        if teacher:
            if len(teacher) != len(records):
                raise ValueError("some records have teacher_scores and some do not")
            batch["teacher"] = torch.tensor(teacher, dtype=torch.float32)  # (Q, G)
        return batch
