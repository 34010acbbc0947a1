import numpy as np
import pytest
import torch

from ragtune.config import ModelConfig
from ragtune.models.encoder import Encoder, resolve_model_path
from ragtune.retrieval.cache import cached_encode

TEXTS = ["protein", "the galaxy of river engine data", "a violin", "study shows new results about forest data and"]


@pytest.fixture
def encoder(tiny_model_dir):
    return Encoder.from_config(ModelConfig(name=str(tiny_model_dir), doc_max_length=8, query_prefix="study "))


def test_encode_equals_one_at_a_time_in_input_order(encoder):
    batched = encoder.encode(TEXTS, kind="doc", batch_size=2, show_progress=False)
    single = np.stack([encoder.encode([t], kind="doc", show_progress=False)[0] for t in TEXTS])
    assert batched.dtype == np.float32 and batched.shape == (4, 32)
    np.testing.assert_allclose(batched, single, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(batched, axis=1), 1.0, atol=1e-5)


def test_prefix_and_max_length_applied(encoder):
    tokens = encoder.tokenize(["protein"], "query")
    words = encoder.tokenizer.convert_ids_to_tokens(tokens["input_ids"][0])
    assert words == ["[CLS]", "study", "protein", "[SEP]"]
    long = encoder.tokenize(["data " * 50], "doc")
    assert long["input_ids"].shape[1] == 8


def test_save_and_load_round_trip(encoder, tmp_path):
    encoder.save(tmp_path / "enc")
    loaded = Encoder.load(tmp_path / "enc")
    assert loaded.cfg.query_prefix == "study " and loaded.cfg.doc_max_length == 8
    np.testing.assert_allclose(loaded.encode(TEXTS, show_progress=False), encoder.encode(TEXTS, show_progress=False),
                               atol=1e-6)


def test_unknown_model_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="neither an alias .* nor a local folder"):
        resolve_model_path(str(tmp_path / "nothing"))


def test_cache_encodes_once_per_key(encoder, monkeypatch, tmp_path):
    calls = []
    real = encoder.encode
    monkeypatch.setattr(encoder, "encode", lambda *a, **k: calls.append(1) or real(*a, **k))
    first = cached_encode(encoder, TEXTS, "doc", str(tmp_path))
    second = cached_encode(encoder, TEXTS, "doc", str(tmp_path))
    assert len(calls) == 1 and np.array_equal(first, second)
    cached_encode(encoder, TEXTS[:3], "doc", str(tmp_path))  # other texts: a new key
    with torch.no_grad():
        encoder.backbone.embeddings.word_embeddings.weight[5] += 1.0  # other weights: a new key
    cached_encode(encoder, TEXTS, "doc", str(tmp_path))
    assert len(calls) == 3


def test_the_cache_key_holds_only_the_settings_of_its_kind(encoder, tmp_path):
    import dataclasses

    from ragtune.retrieval.cache import cache_path

    def key(kind: str, **changes):
        other = Encoder(encoder.backbone, encoder.tokenizer, dataclasses.replace(encoder.cfg, **changes))
        return cache_path(other, TEXTS, kind, str(tmp_path))

    assert key("doc", query_max_length=7, query_prefix="q: ") == key("doc")  # a query setting keeps the corpus
    assert key("doc", doc_max_length=7) != key("doc") and key("doc", pooling="cls") != key("doc")
    assert key("query", doc_prefix="d: ") == key("query") and key("query", query_max_length=7) != key("query")
