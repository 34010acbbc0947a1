"""The late-interaction model: tokens, masks, shapes, the flat encoding and the saved folder."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ragtune.config import LateConfig, ModelConfig
from ragtune.models.late_interaction import LateInteraction
from ragtune.training.gradcache import grad_cache_step, split_batch
from tests.conftest import write_tiny_bert

TEXTS = ["alpha beta , gamma .", "beta", "gamma alpha alpha ! beta beta"]


@pytest.fixture(scope="module")
def punct_model_dir(tmp_path_factory):
    return write_tiny_bert(tmp_path_factory.mktemp("late_bert"), extra_tokens=(",", ".", "!", "alpha", "beta",
                                                                               "gamma"), dropout=0.0)


def _model(path, **late) -> LateInteraction:
    cfg = ModelConfig(name=str(path), doc_max_length=10)
    return LateInteraction.from_config(cfg, LateConfig(dim=6, query_length=8, **late), seed=0)


def test_query_expansion_pads_with_mask_tokens_that_get_vectors_but_no_attention(punct_model_dir):
    model = _model(punct_model_dir)
    batch = model.tokenize(["alpha beta"], "query")
    ids, attention, vectors = batch["input_ids"][0], batch["attention_mask"][0], batch["vector_mask"][0]
    tok = model.tokenizer
    assert ids.tolist()[:4] == [tok.cls_token_id, *tok.convert_tokens_to_ids(["alpha", "beta"]), tok.sep_token_id]
    assert ids.tolist()[4:] == [tok.mask_token_id] * 4 and len(ids) == 8  # padded to late.query_length
    assert attention.tolist() == [1, 1, 1, 1, 0, 0, 0, 0]  # expansion not attended to (PyLate's default)
    assert vectors.tolist() == [1] * 8  # ... but every position gets a vector
    attend = _model(punct_model_dir, attend_to_expansion=True).tokenize(["alpha beta"], "query")
    assert attend["attention_mask"][0].tolist() == [1] * 8
    plain = _model(punct_model_dir, query_expansion=False).tokenize(["alpha beta"], "query")
    assert plain["input_ids"].shape[1] == 4 and "vector_mask" not in plain


def test_documents_drop_punctuation_and_padding(punct_model_dir):
    model = _model(punct_model_dir)
    batch = model.tokenize(TEXTS[:2], "doc")
    # [CLS] alpha beta , gamma . [SEP]  /  [CLS] beta [SEP] + padding
    assert batch["vector_mask"].tolist() == [[1, 1, 1, 0, 1, 0, 1], [1, 1, 1, 0, 0, 0, 0]]
    kept = _model(punct_model_dir, mask_punctuation=False).tokenize(TEXTS[:2], "doc")
    assert "vector_mask" not in kept


def test_forward_pads_to_the_kind_length_with_zero_rows_and_unit_vectors(punct_model_dir):
    model = _model(punct_model_dir).eval()
    batch = model.tokenize(TEXTS[:2], "doc")
    out = model(**batch, kind="doc")
    assert out.shape == (2, 10, 6)  # doc_max_length, dim
    norms = out.norm(dim=-1)
    mask = torch.zeros(2, 10)
    mask[:, :7] = batch["vector_mask"]
    torch.testing.assert_close(norms, mask)  # unit rows where a token has a vector, zero rows elsewhere


def test_flat_encoding_holds_each_texts_token_vectors_in_input_order(punct_model_dir):
    model = _model(punct_model_dir).eval()
    vectors, offsets = model.encode(TEXTS, "doc", batch_size=2, show_progress=False)
    assert vectors.dtype == np.float16 and offsets[0] == 0 and offsets[-1] == len(vectors)
    for i, text in enumerate(TEXTS):
        batch = model.tokenize([text], "doc")
        with torch.no_grad():
            rows = model(**batch, kind="doc")[0]
        rows = rows[rows.abs().amax(dim=-1) > 0]
        np.testing.assert_allclose(vectors[offsets[i]:offsets[i + 1]].astype(np.float32), rows.numpy(), atol=1e-3)


def test_save_and_load_give_the_same_vectors(punct_model_dir, tmp_path):
    from ragtune.models.export import export_late_interaction

    model = _model(punct_model_dir).eval()
    export_late_interaction(model, tmp_path / "late")
    loaded = LateInteraction.load(tmp_path / "late").eval()
    assert loaded.late == model.late and loaded.late.query_length == 8
    torch.testing.assert_close(loaded.encode_queries(TEXTS), model.encode_queries(TEXTS))
    assert (tmp_path / "late" / "1_Dense" / "model.safetensors").is_file()  # PyLate's layout beside ragtune's


def test_gradcache_over_token_vectors_matches_the_full_batch(punct_model_dir):
    from ragtune.config import LossConfig
    from ragtune.losses import compute_loss

    def grads(chunk: int):
        model = _model(punct_model_dir)
        q, d = model.tokenize(TEXTS, "query"), model.tokenize(TEXTS[::-1] * 2, "doc")  # G = 2
        def loss_fn(qe, de):
            return compute_loss(LossConfig(), group_size=2, q_emb=qe, d_emb=de, temperature=1.0)
        if chunk:
            grad_cache_step(lambda b: model(**b, kind="query"), lambda b: model(**b, kind="doc"),
                            split_batch(q, chunk), split_batch(d, chunk), loss_fn)
        else:
            loss_fn(model(**q, kind="query"), model(**d, kind="doc")).backward()
        return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}

    full, cached = grads(0), grads(2)
    assert full.keys() == cached.keys() and "projection.weight" in full
    for name in full:
        torch.testing.assert_close(cached[name], full[name], atol=1e-5, rtol=1e-4)


def test_training_goes_on_from_a_saved_folder_with_its_projection(punct_model_dir, tmp_path):
    from ragtune.config import ConfigError

    model = _model(punct_model_dir)
    with torch.no_grad():
        model.projection.weight.mul_(3.0)  # "trained"
    model.save(tmp_path / "saved")
    again = _model(tmp_path / "saved")
    torch.testing.assert_close(again.projection.weight, model.projection.weight)
    with pytest.raises(ConfigError, match="late.dim=5: .* was trained with 6-dim token vectors"):
        LateInteraction.from_config(ModelConfig(name=str(tmp_path / "saved")), LateConfig(dim=5))
