"""Inference backends: the same `encode` / `score` as the torch models, run by int8 torch or onnxruntime.

`for_inference(model, eval_cfg)` returns `model` itself for `eval.backend=torch` and otherwise a
wrapper with the model's `encode` (bi-encoder) or `score` (cross-encoder): the same tokenization,
length-sorted batching and outputs, with another forward:

- `torch_int8`: a copy of the model with every `nn.Linear` dynamically quantized to int8
  (`torch.ao.quantization.quantize_dynamic`; int8 weights per output channel, activations quantized
  per batch);
- `torch_int8_smooth` (cross-encoders): `torch_int8` after SmoothQuant scales calibrated on unlabelled
  pairs from the corpus, their strength chosen by fidelity to fp32 (ragtune/inference/smooth_quant.py);
- `onnx`, `onnx_int8`: the model exported by ragtune/inference/onnx_export.py, run by onnxruntime;
  exports are kept under `<cache root>/onnx/<weights key>/` so a second evaluation of the same weights
  skips the export.

The wrapper keeps the source model (`.source`) and names its `.backend`, which the embedding and
score caches add to their keys: an int8 embedding never answers for an fp32 one.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import hashlib
import json
import os
import shutil
import threading
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import get_args, get_type_hints

import numpy as np
import torch
from torch import nn

from ragtune.config import EvalConfig, RerankConfig
from ragtune.inference.onnx_export import MODEL_FILE, ONNX_META, export_onnx, int8_name, quantize_int8, read_meta
from ragtune.inference.smooth_quant import Pairs

BACKENDS: tuple[str, ...] = get_args(get_type_hints(EvalConfig)["backend"])
# the cross-encoders' backends: the above and those that need calibration pairs
RERANK_BACKENDS: tuple[str, ...] = tuple(b for b in get_args(get_type_hints(RerankConfig)["backend"]) if b)
CPU = torch.device("cpu")  # where every non-torch backend runs


@functools.cache  # read once: cache keys ask for every entry
def vnni_cpu() -> bool:
    """Whether the CPU has VNNI (int8 dot products summed straight into int32; Linux's cpuinfo flags)."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return any(f" {flag}" in flags for flag in ("avx512_vnni", "avx_vnni", "amx_int8"))


def _full_range_linear():
    from torch.ao.nn.quantized.dynamic import Linear as DynamicLinear

    class FullRangeDynamicLinear(DynamicLinear):
        """torch's dynamic int8 Linear with activations quantized to all 8 bits. torch always uses 7
        (`reduce_range=True`), because without VNNI the u8 x s8 products are summed in int16 and 8 bits
        can overflow; with VNNI they are summed in int32, and the 8th bit brings the embeddings' mean
        cosine to fp32 up to onnxruntime's (README, Inference)."""

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.ops.quantized.linear_dynamic(x, self._packed_params._packed_params,
                                                      reduce_range=False).to(x.dtype)

    return FullRangeDynamicLinear


def quantize_linear_int8(model: nn.Module, full_range: bool | None = None) -> nn.Module:
    """A copy of `model` whose nn.Linear layers run int8: dynamic quantization, weights per output channel,
    activations on 8 bits where the CPU has VNNI (`full_range` None = detect), else torch's 7.
    Per-tensor weight scales (torch's default) move MiniLM's embeddings far more (README, Inference)."""
    from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic

    full_range = vnni_cpu() if full_range is None else full_range
    mapping = {nn.Linear: _full_range_linear()} if full_range else None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.ao.quantization's notice that it moves to torchao
        return quantize_dynamic(copy.deepcopy(model).cpu().eval(), {nn.Linear: per_channel_dynamic_qconfig},
                                mapping=mapping)


def onnx_session(path: Path, threads: int = 0):
    """An onnxruntime CPU session; `threads` 0 = torch's thread count (so OMP_NUM_THREADS holds for both)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads or torch.get_num_threads()
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def onnx_forward(path: Path, names: list[str]):
    """batch of torch tensors -> the graph's single output as float32 numpy.

    The session's intra-op threads follow torch's count at call time: all of them for batches run one
    after another, 1 inside `map_batches`' per-core workers (sessions built on first use, one per count)."""
    sessions, lock = {}, threading.Lock()

    def forward(batch: dict[str, torch.Tensor]) -> np.ndarray:
        threads = torch.get_num_threads()
        with lock:
            if threads not in sessions:
                sessions[threads] = onnx_session(path, threads)
        return sessions[threads].run(None, {n: batch[n].numpy() for n in names})[0].astype(np.float32, copy=False)

    return forward


def export_dir(model, cache_dir: str | None, adapter: nn.Module | None = None) -> Path:
    """Where the export of these weights (and adapter) lives: a key over weights and settings."""
    from ragtune.retrieval.cache import cache_root, weights_fingerprint

    settings = getattr(model, "cfg", None)
    h = hashlib.sha256()
    for part in (weights_fingerprint(model), type(model).__name__, repr(settings),
                 repr(getattr(model, "late", None)), weights_fingerprint(adapter) if adapter is not None else ""):
        h.update(part.encode())
    return cache_root(cache_dir) / "onnx" / h.hexdigest()[:32]


def exported(model, cache_dir: str | None, int8: bool, adapter: nn.Module | None = None) -> Path:
    """The export folder for `model`, written on first use (fp32, and int8 when asked)."""
    path = export_dir(model, cache_dir, adapter)
    if not (path / ONNX_META).is_file():
        # Written beside and renamed: a crash mid-export never leaves a folder that looks complete.
        tmp = path.with_name(f"{path.name}.tmp{os.getpid()}")
        export_onnx(model if model.device.type == "cpu" else copy.deepcopy(model).cpu(), tmp, adapter=adapter)
        try:
            tmp.replace(path)
        except OSError:  # another process finished the same export first
            shutil.rmtree(tmp, ignore_errors=True)
    if int8:
        for file in set(read_meta(path)["files"].values()):
            if not (path / int8_name(file)).is_file():
                quantize_int8(path / file, path / int8_name(file))
    return path


@dataclass(frozen=True)
class SmoothSettings:
    """torch_int8_smooth's inputs: `pairs()` -> (calibration pairs, fidelity pairs), built on first use;
    the alphas to choose from; the batch size the calibration scores with."""

    pairs: Callable[[], tuple[Pairs, Pairs]]
    alphas: tuple[float, ...]
    batch_size: int = 16


def calibration_path(model, smooth: SmoothSettings, pairs: tuple[Pairs, Pairs], cache_dir: str | None) -> Path:
    """Where a calibration of these weights on these pairs is kept: a key over everything it depends on."""
    from ragtune.retrieval.cache import cache_root, texts_fingerprint, weights_fingerprint

    h = hashlib.sha256()
    for part in (weights_fingerprint(model), *(texts_fingerprint(t) for half in pairs for t in half),
                 repr(sorted(smooth.alphas)), str(smooth.batch_size), backend_cache_tag("torch_int8_smooth")):
        h.update(part.encode())
        h.update(b"\x00")
    return cache_root(cache_dir) / "int8_calibration" / f"{h.hexdigest()[:32]}.safetensors"


def _save_calibration(path: Path, absmax: dict[str, torch.Tensor], report) -> None:
    """The channel ranges and the report in one safetensors file, renamed into place (never half-written)."""
    from safetensors.torch import save_file

    path.parent.mkdir(parents=True, exist_ok=True)
    fields = json.dumps(dataclasses.asdict(dataclasses.replace(report, seconds=0.0))).encode()
    tmp = path.with_name(f"{path.name}.tmp{os.getpid()}")
    save_file({**{f"absmax.{n}": t.contiguous() for n, t in absmax.items()},
               "__report__": torch.frombuffer(bytearray(fields), dtype=torch.uint8)}, str(tmp))
    tmp.replace(path)


def _load_calibration(path: Path):
    """(channel ranges, Calibration) written by `_save_calibration`."""
    from safetensors.torch import load_file

    from ragtune.inference.smooth_quant import Calibration

    tensors = load_file(str(path))
    fields = json.loads(tensors.pop("__report__").numpy().tobytes().decode())
    fields["mean_abs_error"] = {float(a): e for a, e in fields["mean_abs_error"].items()}  # JSON keys are text
    return {name.removeprefix("absmax."): t for name, t in tensors.items()}, Calibration(**fields)


def smoothed_int8(model, smooth: SmoothSettings, cache_dir: str | None = None):
    """(forward, Calibration) of a cross-encoder's calibrated int8 copy (ragtune/inference/smooth_quant.py).

    The channel ranges and the choice are kept in the cache (`int8_calibration/`): evaluating the same
    weights again rebuilds the int8 model from them instead of scoring the calibration pairs."""
    from ragtune.inference.smooth_quant import calibrate, smoothed_copy

    cpu_model = (model if model.device.type == "cpu" else copy.deepcopy(model).cpu()).eval()

    def score(module: nn.Module, pairs: Pairs) -> np.ndarray:
        return cpu_model.score_with(lambda batch: module(**batch).float().numpy(), *pairs, smooth.batch_size,
                                    False, CPU)

    start = time.perf_counter()
    pairs = smooth.pairs()
    path = calibration_path(cpu_model, smooth, pairs, cache_dir)
    with torch.inference_mode():
        if path.is_file():
            absmax, report = _load_calibration(path)
            quantized = quantize_linear_int8(smoothed_copy(cpu_model, absmax, report.alpha) if report.alpha
                                             else cpu_model)
            report = dataclasses.replace(report, cached=True)
        else:
            absmax = {}
            quantized, report = calibrate(cpu_model, score, *pairs, smooth.alphas, quantize_linear_int8,
                                          absmax_out=absmax)
            _save_calibration(path, absmax, report)
    return (lambda batch: quantized(**batch).float().numpy()), dataclasses.replace(
        report, seconds=time.perf_counter() - start)


def backend_forward(model, backend: str, cache_dir: str | None):
    """`forward(batch of CPU tensors) -> float32 numpy` of `model` (Encoder or CrossEncoder) on `backend`."""
    if backend == "torch_int8":
        quantized = quantize_linear_int8(model)
        return lambda batch: quantized(**batch).float().numpy()
    int8 = backend == "onnx_int8"
    path = exported(model, cache_dir, int8)
    return onnx_forward(path / (int8_name(MODEL_FILE) if int8 else MODEL_FILE), read_meta(path)["inputs"])


class _Backend:
    """The source model and its forward on the backend, built on first use: a run whose embeddings or
    scores are all in the cache never quantizes, calibrates or exports. `calibration` says what
    torch_int8_smooth chose, once it has (None before and on the other backends)."""

    def __init__(self, source, backend: str, cache_dir: str | None, smooth: SmoothSettings | None = None):
        self.source, self.backend, self.cache_dir, self.smooth = source, backend, cache_dir, smooth
        self._forward = None
        self.calibration = None

    @property
    def forward(self):
        if self._forward is None:
            if self.backend == "torch_int8_smooth":
                self._forward, self.calibration = smoothed_int8(self.source, self.smooth, self.cache_dir)
            else:
                self._forward = backend_forward(self.source, self.backend, self.cache_dir)
        return self._forward

    def prepare(self):
        """Quantize, calibrate or export now rather than on the first call; returns self."""
        _ = self.forward
        return self


class BackendEncoder(_Backend):
    """A bi-encoder's `encode` on another backend; `cfg`, `tokenizer` and the cache key's weights are the source's."""

    def __init__(self, source, backend: str, cache_dir: str | None = None):
        super().__init__(source, backend, cache_dir)
        self.cfg, self.tokenizer = source.cfg, source.tokenizer

    def encode(self, texts: list[str], kind: str = "doc", batch_size: int = 16,
               show_progress: bool = True) -> np.ndarray:
        with torch.inference_mode():
            return self.source.encode_with(self.forward, texts, kind, batch_size, show_progress, CPU)


class BackendCrossEncoder(_Backend):
    """A cross-encoder's `score` on another backend; formatting settings are the source's."""

    def __init__(self, source, backend: str, cache_dir: str | None = None, smooth: SmoothSettings | None = None):
        super().__init__(source, backend, cache_dir, smooth)
        self.tokenizer, self.doc_template = source.tokenizer, source.doc_template
        self.max_length, self.query_max_length = source.max_length, source.query_max_length

    def score(self, queries: list[str], docs: list[str], batch_size: int = 16,
              show_progress: bool = False) -> np.ndarray:
        with torch.inference_mode():
            return self.source.score_with(self.forward, queries, docs, batch_size, show_progress, CPU)


def for_inference(model, backend: str = "torch", cache_dir: str | None = None, smooth: SmoothSettings | None = None):
    """`model` (an Encoder or a CrossEncoder) run by `backend`; `torch` returns it unchanged.
    torch_int8_smooth (cross-encoders only) needs `smooth`: where its calibration pairs come from."""
    from ragtune.models.cross_encoder import CrossEncoder
    from ragtune.models.encoder import Encoder

    if backend not in RERANK_BACKENDS:
        raise ValueError(f"backend '{backend}' is not one of {list(RERANK_BACKENDS)}")
    if isinstance(model, _Backend):
        model = model.source
    if backend == "torch" or model is None:
        return model
    if backend == "torch_int8_smooth":
        if not isinstance(model, CrossEncoder):
            raise TypeError(f"backend 'torch_int8_smooth' calibrates cross-encoders, not {type(model).__name__}")
        if smooth is None:
            raise ValueError("backend 'torch_int8_smooth' needs its calibration pairs (smooth=SmoothSettings(...))")
    if isinstance(model, Encoder):
        return BackendEncoder(model, backend, cache_dir)
    if isinstance(model, CrossEncoder):
        return BackendCrossEncoder(model, backend, cache_dir, smooth)
    raise TypeError(f"eval.backend='{backend}' runs bi-encoders and cross-encoders, not {type(model).__name__}")


def source_and_backend(model) -> tuple[object, str]:
    """(the torch model whose weights key a cache, its backend): caches call this on whatever they get."""
    if isinstance(model, _Backend):
        return model.source, model.backend
    return model, "torch"


def backend_cache_tag(backend: str) -> str:
    """The backend as cache keys name it: torch_int8 says how many bits its activations get (vnni_cpu)."""
    return f"{backend}-a8" if backend.startswith("torch_int8") and vnni_cpu() else backend
