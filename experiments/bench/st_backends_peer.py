"""sentence-transformers' CPU backends, run in .venv-onnx-peer (scripts/setup_onnx_peer.sh) by
experiments/bench/inference.py. No ragtune import: that environment pins another transformers.

Backends: `torch`, `onnx` (optimum's export), `onnx_qint8` and `onnx_qint8_vnni` (sentence-transformers'
`export_dynamic_quantized_onnx_model` with its avx2 and avx512_vnni configs: which one a CPU runs
fastest depends on its instruction set, so both are rows), `openvino` (fp32). Static int8 OpenVINO
needs a calibration dataset from the Hugging Face Hub, which this machine cannot reach, so it is not a row.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from experiments.bench.common import mark_loaded

# what export_dynamic_quantized_onnx_model names its files, by config
QINT8_FILES = {"onnx_qint8": "onnx/model_quint8_avx2.onnx", "onnx_qint8_vnni": "onnx/model_qint8_avx512_vnni.onnx"}


def _load(model_dir: str, backend: str, max_length: int):
    from sentence_transformers import SentenceTransformer

    if backend == "torch":
        model = SentenceTransformer(model_dir, device="cpu")
    elif backend == "onnx":
        model = SentenceTransformer(model_dir, backend="onnx", model_kwargs={"file_name": "onnx/model.onnx"})
    elif backend in QINT8_FILES:
        model = SentenceTransformer(model_dir, backend="onnx", model_kwargs={"file_name": QINT8_FILES[backend]})
    elif backend == "openvino":
        model = SentenceTransformer(model_dir, backend="openvino")
    else:
        raise ValueError(f"unknown sentence-transformers backend {backend!r}")
    model.max_seq_length = max_length
    return model


def prepare(model_dir: str) -> dict:
    """Write the ONNX, ONNX-qint8 and OpenVINO files into `model_dir` (a copy of the model) once."""
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.backend import export_dynamic_quantized_onnx_model

    done = {}
    onnx = SentenceTransformer(model_dir, backend="onnx")
    onnx.save_pretrained(model_dir)  # onnx/model.onnx
    export_dynamic_quantized_onnx_model(onnx, "avx2", model_dir)
    export_dynamic_quantized_onnx_model(onnx, "avx512_vnni", model_dir)
    done["onnx"] = done["onnx_qint8"] = done["onnx_qint8_vnni"] = True
    try:
        SentenceTransformer(model_dir, backend="openvino").save_pretrained(model_dir)
        done["openvino"] = True
    except Exception as e:  # OpenVINO is optional
        done["openvino"] = f"{type(e).__name__}: {e}"
    return {"prepared": json.dumps(done), "files": sorted(str(p.relative_to(model_dir))
                                                          for p in Path(model_dir).rglob("*.onnx"))}


def throughput(model_dir: str, backend: str, texts_file: str, n_docs: int, batch_size: int, max_length: int) -> dict:
    texts = json.loads(Path(texts_file).read_text())["docs"][:n_docs]
    model = _load(model_dir, backend, max_length)
    model.encode(texts[:batch_size], batch_size=batch_size)  # warm-up
    mark_loaded()
    start = time.perf_counter()
    model.encode(texts, batch_size=batch_size, normalize_embeddings=True)
    seconds = time.perf_counter() - start
    return {"seconds": seconds, "docs_per_s": len(texts) / seconds}


def embed_all(model_dir: str, backend: str, texts_file: str, batch_size: int, max_length: int, out: str) -> dict:
    """Corpus and queries embedded, written to `out` (.npz) for the driver's nDCG."""
    import numpy as np

    data = json.loads(Path(texts_file).read_text())
    model = _load(model_dir, backend, max_length)
    mark_loaded()
    start = time.perf_counter()
    docs = model.encode(data["docs"], batch_size=batch_size, normalize_embeddings=True)
    seconds = time.perf_counter() - start
    queries = model.encode(data["queries"], batch_size=batch_size, normalize_embeddings=True)
    np.savez(out, docs=docs.astype(np.float32), queries=queries.astype(np.float32))
    return {"corpus_seconds": seconds, "corpus_docs_per_s": len(data["docs"]) / seconds}
