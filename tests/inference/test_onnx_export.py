"""ONNX export: each graph reproduces its torch model in onnxruntime, on batch shapes it was not exported
with, and the files run with onnxruntime and a tokenizer alone (no ragtune, no torch)."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")

from ragtune.config import LateConfig, ModelConfig  # noqa: E402
from ragtune.inference.backends import onnx_session  # noqa: E402
from ragtune.inference.onnx_export import (  # noqa: E402
    MODEL_FILE,
    QUERY_FILE,
    export_cross_encoder,
    export_encoder,
    export_late_interaction,
    read_meta,
)
from ragtune.models.adapter import QueryAdapter  # noqa: E402
from ragtune.models.encoder import Encoder  # noqa: E402
from ragtune.models.late_interaction import LateInteraction  # noqa: E402
from tests.conftest import write_tiny_bert  # noqa: E402
from tests.models.test_cross_encoder import tiny_cross_encoder  # noqa: E402

# Batches of 1, 3 and 5 texts of other lengths than the export's example (2 texts).
TEXTS = [["protein"], ["galaxy w3 the study", "river", "engine shows new results about data and w7 in a forest"],
         ["orbit", "market w1", "the a of", "vaccine glacier violin w2 w3 w4 w5", "forest"]]


def run_graph(path, batch: dict) -> np.ndarray:
    session = onnx_session(path)
    names = [i.name for i in session.get_inputs()]
    return session.run(None, {n: batch[n].numpy() for n in names})[0]


@pytest.fixture(scope="module")
def encoder(tiny_model_dir):
    return Encoder.from_config(ModelConfig(name=str(tiny_model_dir), doc_max_length=16)).eval()


@pytest.fixture(scope="module")
def encoder_export(encoder, tmp_path_factory):
    torch.manual_seed(1)
    adapter = QueryAdapter(32, kind="linear", bias=True)
    with torch.no_grad():
        adapter.weight.add_(0.1 * torch.randn(32, 32))  # not the identity, so folding it in shows
    path = export_encoder(encoder, tmp_path_factory.mktemp("onnx_bi"), adapter=adapter, int8=True)
    return path, adapter


def test_bi_encoder_graph_holds_pooling_and_normalisation(encoder, encoder_export):
    path, _ = encoder_export
    for texts in TEXTS:
        batch = encoder.tokenize(texts, "doc")
        with torch.no_grad():
            expected = encoder(**batch).numpy()
        got = run_graph(path / MODEL_FILE, batch)
        np.testing.assert_allclose(got, expected, atol=1e-4, rtol=0)
        np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)  # normalised inside the graph


def test_query_graph_has_the_adapter_folded_in(encoder, encoder_export):
    path, adapter = encoder_export
    batch = encoder.tokenize(TEXTS[1], "query")
    with torch.no_grad():
        expected = adapter(encoder(**batch)).numpy()
        plain = encoder(**batch).numpy()
    got = run_graph(path / QUERY_FILE, batch)
    np.testing.assert_allclose(got, expected, atol=1e-4, rtol=0)
    assert np.abs(got - plain).max() > 1e-2  # the adapter changed the query side
    meta = read_meta(path)
    assert meta["files"] == {"doc": MODEL_FILE, "query": QUERY_FILE} and meta["adapter"]["kind"] == "linear"


def test_int8_files_are_written_and_close_to_fp32(encoder, encoder_export):
    path, _ = encoder_export
    batch = encoder.tokenize(TEXTS[2], "doc")
    fp32 = run_graph(path / MODEL_FILE, batch)
    int8 = run_graph(path / "model_int8.onnx", batch)
    assert (path / "query_int8.onnx").is_file()
    cosine = (fp32 * int8).sum(1) / np.linalg.norm(int8, axis=1)
    assert cosine.min() > 0.95 and np.abs(fp32 - int8).max() > 0  # int8 is another computation, and a close one


def test_cross_encoder_graph_gives_the_logits(tmp_path):
    model = tiny_cross_encoder().eval()
    path = export_cross_encoder(model, tmp_path / "ce")
    queries, docs = ["w1 w2", "w3", "w4 w5 w6"], ["w1 w7 w8 w9", "w3 w3", "w10 w11 w12 w13 w14 w15"]
    batch = model.tokenize(queries, docs)
    with torch.no_grad():
        expected = model(**batch).numpy()
    got = run_graph(path / MODEL_FILE, batch)
    assert got.shape == (3,)
    np.testing.assert_allclose(got, expected, atol=1e-4, rtol=0)


def test_late_interaction_graph_gives_the_masked_token_vectors(tmp_path):
    folder = write_tiny_bert(tmp_path / "bert", extra_tokens=(",", "."), dropout=0.0)
    model = LateInteraction.from_config(ModelConfig(name=str(folder), doc_max_length=12),
                                        LateConfig(dim=6, query_length=8), seed=0).eval()
    path = export_late_interaction(model, tmp_path / "late")
    for texts, kind in ((["protein , river .", "galaxy"], "doc"), (["engine w1", "orbit , forest w2 w3"], "query")):
        batch = model.tokenize(texts, kind)
        batch.setdefault("vector_mask", batch["attention_mask"])
        with torch.no_grad():
            expected = model(**batch, kind=kind).numpy()[:, :batch["input_ids"].shape[1]]
        got = run_graph(path / MODEL_FILE, batch)
        np.testing.assert_allclose(got, expected, atol=1e-4, rtol=0)
    assert read_meta(path)["dim"] == 6


STANDALONE = r"""
import builtins, json, sys
real_import = builtins.__import__
def guarded(name, *args, **kwargs):
    if name.split(".")[0] in ("ragtune", "torch"):
        raise ImportError(f"the exported folder must not need {name}")
    return real_import(name, *args, **kwargs)
builtins.__import__ = guarded
import numpy as np, onnxruntime as ort
from tokenizers import Tokenizer
folder, texts = sys.argv[1], json.loads(sys.argv[2])
meta = json.load(open(f"{folder}/ragtune_onnx.json"))
tok = Tokenizer.from_file(f"{folder}/tokenizer.json")
tok.enable_truncation(meta["doc_max_length"])
tok.enable_padding(pad_id=0)
enc = tok.encode_batch([meta["doc_prefix"] + t for t in texts])
feeds = {"input_ids": np.array([e.ids for e in enc], dtype=np.int64),
         "attention_mask": np.array([e.attention_mask for e in enc], dtype=np.int64),
         "token_type_ids": np.array([e.type_ids for e in enc], dtype=np.int64)}
session = ort.InferenceSession(f"{folder}/{meta['files']['doc']}", providers=["CPUExecutionProvider"])
out = session.run(None, {n: feeds[n] for n in meta["inputs"]})[0]
print(json.dumps(out.tolist()))
"""


def test_exported_folder_runs_in_onnxruntime_alone(encoder, encoder_export, subprocess_env):
    path, _ = encoder_export
    texts = TEXTS[1]
    proc = subprocess.run([sys.executable, "-c", STANDALONE, str(path), json.dumps(texts)], capture_output=True,
                          text=True, env=subprocess_env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    got = np.array(json.loads(proc.stdout))
    np.testing.assert_allclose(got, encoder.encode(texts, "doc", show_progress=False), atol=1e-4, rtol=0)
