"""Length-bucketed batches in UniquePositiveBatchSampler: less padding, same guarantees."""

from __future__ import annotations

import random

import pytest

from ragtune.data.collate import UniquePositiveBatchSampler
from ragtune.data.pairs import TrainRecord


def _records(n: int, n_unique_pos: int | None = None) -> list[TrainRecord]:
    n_unique_pos = n_unique_pos or n
    return [TrainRecord(query=f"q{i}", pos=f"doc {i % n_unique_pos}", pos_id=f"d{i % n_unique_pos}")
            for i in range(n)]


def test_one_window_gives_sorted_chunks():
    # 16 records, batch 4, one window holding them all: batches are the length-sorted chunks of 4.
    lengths = list(range(16))
    random.Random(3).shuffle(lengths)
    sampler = UniquePositiveBatchSampler(_records(16), 4, seed=1, drop_last=False, lengths=lengths, bucket_size=4)
    got = sorted(sorted(lengths[i] for i, _ in batch) for batch in sampler)
    assert got == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9, 10, 11], [12, 13, 14, 15]]


def test_bucketing_keeps_unique_positives_coverage_and_determinism():
    records = _records(200, n_unique_pos=60)  # many shared positives: collisions must be deferred
    lengths = [random.Random(i).randint(5, 300) for i in range(200)]
    sampler = UniquePositiveBatchSampler(records, 8, seed=7, drop_last=False, lengths=lengths, bucket_size=5)
    batches = [[i for i, _ in b] for b in sampler]
    for batch in batches:
        keys = [records[i].pos_id for i in batch]
        assert len(keys) == len(set(keys))
    assert sorted(i for b in batches for i in b) == list(range(200))  # every record exactly once
    again = UniquePositiveBatchSampler(records, 8, seed=7, drop_last=False, lengths=lengths, bucket_size=5)
    assert [[i for i, _ in b] for b in again] == batches
    sampler.set_epoch(1)
    assert [[i for i, _ in b] for b in sampler] != batches


def test_bucketing_pads_less_and_zero_buckets_is_the_old_sampler():
    records = _records(256)
    lengths = [random.Random(i).randint(10, 512) for i in range(256)]
    plain = UniquePositiveBatchSampler(records, 16, seed=0, lengths=lengths)
    assert list(plain) == list(UniquePositiveBatchSampler(records, 16, seed=0))

    def padded(sampler):  # tokens after padding each batch to its longest
        return sum(len(b) * max(lengths[i] for i, _ in b) for b in sampler)

    bucketed = UniquePositiveBatchSampler(records, 16, seed=0, lengths=lengths, bucket_size=8)
    assert padded(bucketed) < 0.75 * padded(plain)


def test_bucketing_needs_lengths():
    with pytest.raises(ValueError, match="lengths"):
        UniquePositiveBatchSampler(_records(4), 2, seed=0, bucket_size=2)
    with pytest.raises(ValueError, match="3 entries for 4 records"):
        UniquePositiveBatchSampler(_records(4), 2, seed=0, lengths=[1, 2, 3], bucket_size=2)
