"""Inference backends: selection, outputs against the torch model, cache keys, and the config checks."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest
import torch

from ragtune.config import ConfigError, ExperimentConfig, ModelConfig, load_config
from ragtune.inference.backends import (
    BACKENDS,
    BackendCrossEncoder,
    BackendEncoder,
    export_dir,
    for_inference,
    source_and_backend,
)
from ragtune.models.encoder import Encoder
from ragtune.retrieval.cache import cache_path, cached_encode, texts_fingerprint, weights_fingerprint
from ragtune.tasks.reranker import rerank_backend, score_cache_path
from tests.models.test_cross_encoder import tiny_cross_encoder

TEXTS = ["protein w1 the study", "galaxy", "river shows new results about data", "engine w3", "orbit w4 w5 a"]
ONNX = [b for b in BACKENDS if b.startswith("onnx")]


@pytest.fixture(scope="module")
def encoder(tiny_model_dir):
    return Encoder.from_config(ModelConfig(name=str(tiny_model_dir), doc_max_length=16)).eval()


@pytest.fixture(scope="module")
def export_cache(tmp_path_factory) -> str:
    """One cache for the module: the onnx and onnx_int8 tests share one export of the tiny model."""
    return str(tmp_path_factory.mktemp("onnx_cache"))


def cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)


def test_torch_backend_is_the_model_itself(encoder):
    assert for_inference(encoder, "torch") is encoder
    wrapped = for_inference(encoder, "torch_int8")
    assert for_inference(wrapped, "torch") is encoder  # unwraps back to the source
    with pytest.raises(ValueError, match="not one of"):
        for_inference(encoder, "tensorrt")


@pytest.mark.parametrize("backend", ["torch_int8", *ONNX])
def test_each_backend_encodes_like_the_torch_model(encoder, backend, export_cache):
    if backend.startswith("onnx"):
        pytest.importorskip("onnxruntime")
        pytest.importorskip("onnxscript")
    wrapped = for_inference(encoder, backend, export_cache)
    assert isinstance(wrapped, BackendEncoder) and wrapped.backend == backend
    expected = encoder.encode(TEXTS, "doc", batch_size=2, show_progress=False)
    got = wrapped.encode(TEXTS, "doc", batch_size=2, show_progress=False)
    assert got.shape == expected.shape and got.dtype == np.float32
    if backend == "onnx":  # the same computation: fp32 to rounding
        np.testing.assert_allclose(got, expected, atol=1e-4, rtol=0)
    else:  # int8: another computation, close in direction
        assert cosine(got, expected).min() > 0.95 and np.abs(got - expected).max() > 1e-6


def test_onnx_export_is_reused_for_the_same_weights(encoder, export_cache):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    for_inference(encoder, "onnx", export_cache).encode(TEXTS[:2], show_progress=False)
    folder = export_dir(encoder, export_cache)
    stamp = (folder / "model.onnx").stat().st_mtime_ns
    for_inference(encoder, "onnx", export_cache).encode(TEXTS[:2], show_progress=False)
    assert (folder / "model.onnx").stat().st_mtime_ns == stamp
    other = Encoder.from_config(ModelConfig(name=encoder.cfg.name, doc_max_length=16))
    with torch.no_grad():
        other.backbone.embeddings.word_embeddings.weight.add_(0.01)
    assert export_dir(other, export_cache) != folder  # new weights, new export


def test_cache_keys_separate_backends_and_keep_the_fp32_key(encoder, tmp_path):
    fp32 = cache_path(encoder, TEXTS, "doc", str(tmp_path))
    int8 = cache_path(for_inference(encoder, "torch_int8"), TEXTS, "doc", str(tmp_path), 2)
    assert fp32 != int8 and fp32 == cache_path(encoder, TEXTS, "doc", str(tmp_path), 2)
    assert cache_path(for_inference(encoder, "torch_int8"), TEXTS, "doc", str(tmp_path), 2) == int8
    # int8 quantizes activations per batch, so another batch size is another entry
    assert cache_path(for_inference(encoder, "torch_int8"), TEXTS, "doc", str(tmp_path), 4) != int8
    # an int8 entry never answers an fp32 lookup
    cached_encode(for_inference(encoder, "torch_int8"), TEXTS, "doc", str(tmp_path), 2, False)
    assert int8.is_file() and not fp32.is_file()
    assert source_and_backend(for_inference(encoder, "torch_int8")) == (encoder, "torch_int8")
    # the fp32 key is the one written before backends existed, so existing caches stay warm
    settings = {k: v for k, v in encoder.cfg.__dict__.items() if k != "name" and not k.startswith("query")}
    key_src = json.dumps({"weights": weights_fingerprint(encoder), "settings": settings, "kind": "doc",
                          "texts": texts_fingerprint(TEXTS)}, sort_keys=True)
    assert fp32.name == f"doc-{hashlib.sha256(key_src.encode()).hexdigest()[:32]}.npy"


def test_cross_encoder_backends_score_like_torch():
    model = tiny_cross_encoder().eval()
    queries, docs = ["w1 w2", "w3", "w4 w5 w6", "w7"], ["w1 w7 w8 w9", "w3 w3", "w10 w11 w12 w13", "w8"]
    expected = model.score(queries, docs, batch_size=2)
    wrapped = for_inference(model, "torch_int8")
    assert isinstance(wrapped, BackendCrossEncoder) and wrapped.doc_template == model.doc_template
    got = wrapped.score(queries, docs, batch_size=2)
    assert got.shape == (4,) and np.abs(got - expected).max() < 0.05 * (np.abs(expected).max() + 1e-3) + 1e-2


def test_rerank_score_cache_key_names_the_backend():
    model = tiny_cross_encoder()
    cfg = ExperimentConfig()
    assert score_cache_path(cfg, model, "test") != score_cache_path(cfg, for_inference(model, "torch_int8"), "test")


def test_backend_checked_when_the_config_is_parsed(tmp_path):
    config = tmp_path / "c.py"
    config.write_text("from ragtune.config import ExperimentConfig\n"
                      "def get_config():\n    return ExperimentConfig(task='adapter')\n")
    with pytest.raises(ConfigError, match="eval.backend.*task 'adapter' runs on torch"):
        load_config(config, {"eval.backend": "torch_int8"})
    with pytest.raises(ConfigError, match="did you mean 'onnx_int8'"):
        load_config(config, {"task": "eval", "eval.backend": "onnx_int"})
    assert load_config(config, {"task": "eval", "eval.backend": "onnx_int8"}).eval.backend == "onnx_int8"
    with pytest.raises(ConfigError, match="rerank.backend.*task 'eval' runs on torch"):
        load_config(config, {"task": "eval", "rerank.backend": "torch_int8"})
    cfg = load_config(config, {"task": "rerank_eval", "rerank.backend": "onnx_int8"})
    assert (cfg.eval.backend, rerank_backend(cfg)) == ("torch", "onnx_int8")  # fp32 first stage, int8 reranker
    assert rerank_backend(load_config(config, {"task": "rerank_eval", "eval.backend": "torch_int8"})) == "torch_int8"


def int8_linear_by_hand(x: torch.Tensor, linear: torch.nn.Linear, levels: int) -> torch.Tensor:
    """Dynamic int8 by the formula. Weights per output channel, symmetric: w_q = round(w / s_w), with
    s_w = max|w| / 127.5 (torch's symmetric observer spreads [-max, max] over 255 steps). Activations per
    tensor, asymmetric over [min(x, 0), max(x, 0)] on `levels` steps: x_q = clamp(round(x / s_x) + z, 0,
    levels - 1). Then y = s_x s_w (x_q - z) w_q^T + b."""
    w = linear.weight.detach()
    s_w = w.abs().amax(1) / 127.5
    w_q = torch.clamp(torch.round(w / s_w[:, None]), -128, 127)
    lo, hi = min(float(x.min()), 0.0), max(float(x.max()), 0.0)
    s_x = (hi - lo) / (levels - 1)
    z = round(-lo / s_x)
    x_q = torch.clamp(torch.round(x / s_x) + z, 0, levels - 1)
    return s_x * ((x_q - z) @ w_q.T) * s_w + linear.bias.detach()


@pytest.mark.parametrize("full_range", [False, True])
def test_torch_int8_linear_matches_the_formula(full_range):
    from ragtune.inference.backends import quantize_linear_int8, vnni_cpu

    if full_range and not vnni_cpu():
        pytest.skip("8-bit activations are only used (and only exact) on a CPU with VNNI")
    torch.manual_seed(0)
    linear = torch.nn.Linear(48, 24)
    x = torch.randn(7, 48) * 3 + 0.5
    quantized = quantize_linear_int8(torch.nn.Sequential(linear), full_range=full_range)
    got = quantized(x)
    own, other = (256, 128) if full_range else (128, 256)
    gap_own = (got - int8_linear_by_hand(x, linear, own)).abs().max()
    gap_other = (got - int8_linear_by_hand(x, linear, other)).abs().max()
    # the formula up to a rounding tie or two (a step of x times a weight), and not the other bit count's
    step = (max(float(x.max()), 0) - min(float(x.min()), 0)) / (own - 1)
    assert gap_own < 2 * step * linear.weight.abs().max()
    assert gap_own < gap_other / 3 and gap_own < (got - linear(x)).abs().max() / 3


def test_cache_tag_names_torch_int8_activation_bits(monkeypatch):
    import ragtune.inference.backends as backends

    monkeypatch.setattr(backends, "vnni_cpu", lambda: True)
    assert backends.backend_cache_tag("torch_int8") == "torch_int8-a8"
    assert backends.backend_cache_tag("onnx_int8") == "onnx_int8"
    monkeypatch.setattr(backends, "vnni_cpu", lambda: False)
    assert backends.backend_cache_tag("torch_int8") == "torch_int8"


def test_smoothed_int8_needs_calibration_pairs_and_a_cross_encoder(encoder):
    from ragtune.inference.backends import SmoothSettings

    model = tiny_cross_encoder().eval()
    with pytest.raises(ValueError, match="needs its calibration pairs"):
        for_inference(model, "torch_int8_smooth")
    pairs = (["w1 w2", "w3", "w4"], ["w1 w7 w8", "w3 w3 w9", "w10 w11"])
    smooth = SmoothSettings(pairs=lambda: (pairs, pairs), alphas=(0.5, 0.8), batch_size=2)
    with pytest.raises(TypeError, match="calibrates cross-encoders, not Encoder"):
        for_inference(encoder, "torch_int8_smooth", smooth=smooth)
    wrapped = for_inference(model, "torch_int8_smooth", smooth=smooth)
    assert wrapped.calibration is None  # calibrated on first use, not before
    queries, docs = ["w1 w2", "w3", "w4 w5 w6", "w7"], ["w1 w7 w8 w9", "w3 w3", "w10 w11 w12 w13", "w8"]
    expected = model.score(queries, docs, batch_size=2)
    got = wrapped.score(queries, docs, batch_size=2)
    assert np.abs(got - expected).max() < 0.05 * (np.abs(expected).max() + 1e-3) + 1e-2
    report = wrapped.calibration
    assert set(report.mean_abs_error) == {0.0, 0.5, 0.8} and report.fidelity_pairs == 3
    cfg = ExperimentConfig()
    keys = {score_cache_path(cfg, m, "test") for m in (model, for_inference(model, "torch_int8"), wrapped)}
    assert len(keys) == 3  # fp32, plain int8 and smoothed int8 scores never answer for each other


def test_smoothing_settings_checked_when_the_config_is_parsed(tmp_path):
    config = tmp_path / "c.py"
    config.write_text("from ragtune.config import ExperimentConfig\n"
                      "def get_config():\n    return ExperimentConfig(task='rerank_eval')\n")
    with pytest.raises(ConfigError, match=r"int8_smooth_alphas: every value must be in \(0.0, 1.0\]"):
        load_config(config, {"rerank.backend": "torch_int8_smooth", "rerank.int8_smooth_alphas": "0,0.5"})
    with pytest.raises(ConfigError, match="int8_smooth_alphas: torch_int8_smooth needs at least one alpha"):
        load_config(config, {"rerank.backend": "torch_int8_smooth", "rerank.int8_smooth_alphas": ""})
    with pytest.raises(ConfigError, match="eval.backend.*did you mean 'torch_int8'"):
        load_config(config, {"eval.backend": "torch_int8_smooth"})  # the bi-encoders have no calibration
    assert load_config(config, {"rerank.backend": "torch_int8_smooth"}).rerank.int8_smooth_alphas[-1] == 0.9


def test_a_calibration_is_kept_and_read_back_for_the_same_weights(tmp_path, monkeypatch):
    import ragtune.inference.smooth_quant as smooth_quant
    from ragtune.inference.backends import SmoothSettings

    model = tiny_cross_encoder().eval()
    pairs = (["w1 w2", "w3", "w4"], ["w1 w7 w8", "w3 w3 w9", "w10 w11"])
    smooth = SmoothSettings(pairs=lambda: (pairs, pairs), alphas=(0.5, 0.8), batch_size=2)
    queries, docs = ["w1 w2", "w3", "w4 w5 w6"], ["w1 w7 w8 w9", "w3 w3", "w10 w11 w12 w13"]
    first = for_inference(model, "torch_int8_smooth", str(tmp_path), smooth=smooth).prepare()
    expected = first.score(queries, docs, batch_size=2)
    assert len(list((tmp_path / "int8_calibration").glob("*.safetensors"))) == 1

    def no_calibration(*args, **kwargs):
        raise AssertionError("calibrated again although the cache holds these weights' calibration")

    monkeypatch.setattr(smooth_quant, "calibrate", no_calibration)
    second = for_inference(model, "torch_int8_smooth", str(tmp_path), smooth=smooth).prepare()
    np.testing.assert_array_equal(second.score(queries, docs, batch_size=2), expected)
    assert second.calibration.cached and not first.calibration.cached
    assert (second.calibration.alpha, second.calibration.mean_abs_error) == \
           (first.calibration.alpha, first.calibration.mean_abs_error)
    other = tiny_cross_encoder().eval()
    with torch.no_grad():
        other.model.classifier.bias.add_(1.0)  # other weights: their own calibration
    with pytest.raises(AssertionError, match="calibrated again"):
        for_inference(other, "torch_int8_smooth", str(tmp_path), smooth=smooth).prepare()
