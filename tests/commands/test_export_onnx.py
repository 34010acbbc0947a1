"""`ragtune export-onnx`: a saved bi-encoder with its adapter folded in, checked against torch; bad input exits 2."""

from __future__ import annotations

import numpy as np
import pytest
import torch

pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")

from ragtune.commands.export_onnx import CHECK_TEXTS, main  # noqa: E402
from ragtune.config import ModelConfig  # noqa: E402
from ragtune.inference.backends import onnx_session  # noqa: E402
from ragtune.inference.onnx_export import read_meta  # noqa: E402
from ragtune.models.adapter import QueryAdapter, save_adapter  # noqa: E402
from ragtune.models.encoder import Encoder  # noqa: E402
from tests.models.test_cross_encoder import tiny_cross_encoder  # noqa: E402


def test_saved_bi_encoder_and_adapter_export_and_pass_the_check(tmp_path, tiny_model_dir, capsys):
    encoder = Encoder.from_config(ModelConfig(name=str(tiny_model_dir), pooling="cls", doc_max_length=24))
    encoder.save(tmp_path / "model")  # a saved run's model folder: its pooling comes with it
    adapter = QueryAdapter(32, kind="low_rank", rank=4)
    with torch.no_grad():
        adapter.up.normal_()
    save_adapter(adapter, tmp_path / "adapter")
    code = main([str(tmp_path / "model"), "--adapter", str(tmp_path / "adapter"), "--out", str(tmp_path / "onnx"),
                 "--int8"])
    printed = capsys.readouterr().out
    assert code == 0, printed
    assert "query: query.onnx" in printed and "doc: model_int8.onnx" in printed
    meta = read_meta(tmp_path / "onnx")
    assert meta["pooling"] == "cls" and meta["doc_max_length"] == 24 and meta["adapter"]["kind"] == "low_rank"
    # the query graph is the adapted query side, to rounding
    batch = encoder.tokenize(CHECK_TEXTS, "query")
    session = onnx_session(tmp_path / "onnx" / "query.onnx")
    got = session.run(None, {n: batch[n].numpy() for n in meta["inputs"]})[0]
    with torch.no_grad():
        expected = adapter(encoder.eval()(**batch)).numpy()
    np.testing.assert_allclose(got, expected, atol=1e-4, rtol=0)


def test_an_adapter_on_a_reranker_is_refused_before_exporting(tmp_path, capsys):
    tiny_cross_encoder().save(tmp_path / "reranker")
    save_adapter(QueryAdapter(32), tmp_path / "adapter")
    code = main([str(tmp_path / "reranker"), "--adapter", str(tmp_path / "adapter"), "--out", str(tmp_path / "x")])
    assert code == 2 and "cross_encoder" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def test_an_adapter_of_another_width_is_refused_before_exporting(tmp_path, tiny_model_dir, capsys):
    save_adapter(QueryAdapter(16), tmp_path / "adapter")
    code = main([str(tiny_model_dir), "--adapter", str(tmp_path / "adapter"), "--out", str(tmp_path / "x")])
    err = capsys.readouterr().err
    assert code == 2 and "maps 16-d embeddings" in err and "gives 32-d" in err
    assert not (tmp_path / "x").exists()
