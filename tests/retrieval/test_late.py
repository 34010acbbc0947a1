"""Late-interaction search: exact blocked MaxSim against the full score matrix, the token store's
cache, and reranking."""

from __future__ import annotations

import numpy as np
import torch

from ragtune.retrieval.late import TokenStore, late_rerank, late_search, maxsim_search
from ragtune.retrieval.maxsim import maxsim


def _store(seed: int = 0, n_docs: int = 23, dim: int = 4) -> tuple[TokenStore, list[torch.Tensor]]:
    rng = np.random.default_rng(seed)
    docs = []
    for _ in range(n_docs):
        v = rng.standard_normal((int(rng.integers(1, 7)), dim)).astype(np.float32)
        docs.append((v / np.linalg.norm(v, axis=1, keepdims=True)).astype(np.float16))
    offsets = np.concatenate([[0], np.cumsum([len(d) for d in docs])]).astype(np.int64)
    return TokenStore(np.concatenate(docs), offsets), [torch.from_numpy(d.astype(np.float32)) for d in docs]


def _queries(seed: int = 1, n: int = 5, length: int = 3, dim: int = 4) -> torch.Tensor:
    q = torch.nn.functional.normalize(torch.randn(n, length, dim, generator=torch.Generator().manual_seed(seed)),
                                      dim=-1)
    q[0, -1] = 0  # a padding row
    return q


def _full_matrix(q, docs) -> torch.Tensor:
    padded = torch.nn.utils.rnn.pad_sequence(docs, batch_first=True)  # zero rows after each document
    return maxsim(q, padded)


def test_padded_rows_read_back_the_documents():
    store, docs = _store()
    block = store.padded([3, 0])
    assert block.shape == (2, max(len(docs[3]), len(docs[0])), 4)
    torch.testing.assert_close(block[0, :len(docs[3])], docs[3])
    assert block[1, len(docs[0]):].abs().sum() == 0
    assert store.bytes_per_doc() == len(store.vectors) * 4 * 2 / len(store)


def test_blocked_search_is_the_exact_top_k_of_the_full_matrix():
    store, docs = _store()
    q = _queries()
    full = _full_matrix(q, docs).numpy()
    for batch_elements in (1, 50, 10**9):  # one document per block, a few, everything at once
        scores, rows = maxsim_search(q, store, top_k=7, batch_elements=batch_elements)
        want_rows = np.argsort(-full, axis=1, kind="stable")[:, :7]
        np.testing.assert_array_equal(rows, want_rows)
        np.testing.assert_allclose(scores, np.take_along_axis(full, want_rows, axis=1), atol=1e-6)


def test_ties_keep_the_lower_document_first():
    vectors = np.array([[1, 0], [1, 0], [0, 1], [1, 0]], dtype=np.float16)  # docs 0, 1, 3 score the same
    store = TokenStore(vectors, np.arange(5, dtype=np.int64))
    q = torch.tensor([[[1.0, 0.0]]])
    _, rows = maxsim_search(q, store, top_k=4, batch_elements=1)
    assert rows.tolist() == [[0, 1, 3, 2]]


def test_rerank_scores_only_the_first_stage_top_n_by_maxsim():
    store, docs = _store()
    q = _queries()
    doc_ids = [f"d{i}" for i in range(len(docs))]
    query_ids = [f"q{i}" for i in range(len(q))]
    candidates = {qid: {f"d{j}": float(-j) for j in range(10)} for qid in query_ids}  # first stage: d0 > d1 > ..
    run = late_rerank(q, store, query_ids, doc_ids, candidates, top_n=4)
    full = _full_matrix(q, docs)
    for i, qid in enumerate(query_ids):
        assert set(run[qid]) == {"d0", "d1", "d2", "d3"}
        for j in range(4):
            assert abs(run[qid][f"d{j}"] - float(full[i, j])) < 1e-6
    whole = late_search(q, store, query_ids, doc_ids, top_k=3)
    assert list(whole["q2"]) == [doc_ids[j] for j in torch.argsort(-full[2], stable=True)[:3].tolist()]


def test_the_token_store_is_cached_and_memory_mapped_on_a_hit(tiny_model_dir, tmp_path):
    from ragtune.config import LateConfig, ModelConfig
    from ragtune.models.late_interaction import LateInteraction
    from ragtune.retrieval.late import cached_token_store, store_path

    model = LateInteraction.from_config(ModelConfig(name=str(tiny_model_dir), doc_max_length=12), LateConfig(dim=8))
    texts = ["topic0 w1 w2", "topic1 w3", "w4 w5 w6 w7"]
    first = cached_token_store(model, texts, str(tmp_path), show_progress=False)
    assert isinstance(first.vectors, np.ndarray) and not isinstance(first.vectors, np.memmap)
    again = cached_token_store(model, texts, str(tmp_path), show_progress=False)
    assert isinstance(again.vectors, np.memmap)
    np.testing.assert_array_equal(np.asarray(again.vectors), first.vectors)
    np.testing.assert_array_equal(again.offsets, first.offsets)
    other = LateInteraction.from_config(ModelConfig(name=str(tiny_model_dir), doc_max_length=12), LateConfig(dim=8),
                                        seed=1)  # another projection: another entry
    assert store_path(other, texts, str(tmp_path)) != store_path(model, texts, str(tmp_path))
    key = store_path(model, texts, str(tmp_path))

    def variant(model_cfg=None, **late):
        return LateInteraction.from_config(model_cfg or ModelConfig(name=str(tiny_model_dir), doc_max_length=12),
                                           LateConfig(dim=8, **late), temperature=0.5)

    # query-side settings and the temperature do not shape a document's vectors: the same entry
    assert store_path(variant(query_length=7, query_expansion=False, rerank_n=5), texts, str(tmp_path)) == key
    assert store_path(variant(ModelConfig(name=str(tiny_model_dir), doc_max_length=12, query_max_length=9)),
                      texts, str(tmp_path)) == key
    # ... the document's do
    assert store_path(variant(mask_punctuation=False), texts, str(tmp_path)) != key
    assert store_path(variant(ModelConfig(name=str(tiny_model_dir), doc_max_length=11)), texts, str(tmp_path)) != key
