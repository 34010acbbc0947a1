import threading

import numpy as np
import pytest
import torch

from ragtune.config import ModelConfig
from ragtune.models.cross_encoder import CrossEncoder
from ragtune.models.encoder import Encoder
from ragtune.models.parallel_batches import cpu_workers, even_batches, map_batches

CPU, META = torch.device("cpu"), torch.device("meta")  # meta stands in for an accelerator
TEXTS = [f"text {i} " + "word " * (i % 7) for i in range(23)]


@pytest.fixture
def two_threads():
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(threads)


def test_even_batches_fewest_batches_sizes_within_one_order_kept():
    batches = even_batches(np.arange(50), 16)
    assert [len(b) for b in batches] == [13, 13, 12, 12]
    np.testing.assert_array_equal(np.concatenate(batches), np.arange(50))
    assert [len(b) for b in even_batches(np.arange(32), 16)] == [16, 16]
    assert [len(b) for b in even_batches(np.arange(5), 16)] == [5]
    assert even_batches(np.arange(0), 16) == []
    with pytest.raises(ValueError, match="at least 1, got 0"):
        even_batches(np.arange(5), 0)


def test_workers_one_per_thread_and_batch_on_cpu_only(two_threads):
    assert cpu_workers(CPU, 5) == 2 and cpu_workers(CPU, 1) == 1 and cpu_workers(META, 5) == 1
    torch.set_num_threads(1)
    assert cpu_workers(CPU, 5) == 1


def test_results_in_order_each_batch_single_threaded_in_inference_mode(two_threads):
    seen = []

    def fn(batch):
        seen.append((threading.current_thread().name, torch.get_num_threads(), torch.is_inference_mode_enabled()))
        return [x * 10 for x in batch]

    batches = [[i, i + 1] for i in range(0, 12, 2)]
    assert list(map_batches(fn, batches, CPU)) == [[x * 10 for x in b] for b in batches]
    assert all(name.startswith("ragtune-batch") and threads == 1 and inference for name, threads, inference in seen)
    assert torch.get_num_threads() == 2  # restored


def where_and_threads(batch):
    return threading.current_thread(), torch.get_num_threads()


def test_one_batch_or_an_accelerator_runs_in_the_calling_thread_with_all_threads(two_threads):
    for batches, device in (([[1, 2]], CPU), ([[1], [2], [3]], META)):
        seen = list(map_batches(where_and_threads, batches, device))
        assert seen == [(threading.current_thread(), 2)] * len(batches)


def test_threads_restored_when_a_batch_fails(two_threads):
    def fn(batch):
        raise ValueError("bad batch")

    with pytest.raises(ValueError, match="bad batch"):
        list(map_batches(fn, [[1], [2], [3]], CPU))
    assert torch.get_num_threads() == 2


def test_encode_and_score_equal_one_thread_sequential(tiny_model_dir, two_threads):
    encoder = Encoder.from_config(ModelConfig(name=str(tiny_model_dir), doc_max_length=16))
    reranker = CrossEncoder.from_pretrained(str(tiny_model_dir), max_length=24, query_max_length=8)
    queries = ["a query"] * len(TEXTS)
    parallel = encoder.encode(TEXTS, batch_size=4, show_progress=False), reranker.score(queries, TEXTS, batch_size=4)
    torch.set_num_threads(1)
    sequential = encoder.encode(TEXTS, batch_size=4, show_progress=False), reranker.score(queries, TEXTS, batch_size=4)
    for a, b in zip(parallel, sequential, strict=True):
        np.testing.assert_allclose(a, b, atol=1e-6)
    one_at_a_time = np.stack([encoder.encode([t], show_progress=False)[0] for t in TEXTS])
    np.testing.assert_allclose(parallel[0], one_at_a_time, atol=1e-5)
