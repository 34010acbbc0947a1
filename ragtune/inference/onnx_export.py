"""ONNX export of ragtune's models, with everything after the transformer inside the graph.

- bi-encoder: tokens -> pooled (and L2-normalised) embedding, `sentence_embedding` (B, H); with a
  query adapter, a second graph `query.onnx` has the adapter folded in after the pooling, and
  `model.onnx` stays the document side;
- cross-encoder: pair tokens -> one logit per pair, `logits` (B,);
- late interaction: tokens + the vector mask -> normalised token vectors, `token_vectors` (B, T, dim),
  zero where a token gets no vector (the mask and the query expansion stay in the tokenizer step).

Each folder also holds the tokenizer and `ragtune_onnx.json` (kind, inputs, prefixes, lengths), so
onnxruntime and a tokenizer are all a deployment needs: no ragtune, no torch.

The exporter is torch's dynamo one (`torch.onnx.export(..., dynamo=True)`): the TorchScript tracer
freezes transformers' attention-mask construction at the example's shapes, and its graphs then
disagree with torch on other batch shapes. Graphs are then fused for onnxruntime
(`fuse_for_onnxruntime`). The int8 file is onnxruntime's dynamic quantization of
the fp32 one (int8 weights per output channel, activations quantized per batch at run time).
"""

from __future__ import annotations

import json
import logging
import os
import warnings
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

ONNX_META = "ragtune_onnx.json"
MODEL_FILE = "model.onnx"
QUERY_FILE = "query.onnx"  # bi-encoder with a query adapter: the query side
OPSET = 18
TOKEN_INPUTS = ("input_ids", "attention_mask", "token_type_ids")


class EncoderGraph(nn.Module):
    """Encoder.forward, then the adapter if any: the whole query or document side in one graph."""

    def __init__(self, encoder, adapter: nn.Module | None = None):
        super().__init__()
        self.encoder, self.adapter = encoder, adapter

    def forward(self, input_ids, attention_mask, token_type_ids=None):
        emb = self.encoder(input_ids, attention_mask, token_type_ids)
        return emb if self.adapter is None else self.adapter(emb)


class CrossEncoderGraph(nn.Module):
    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, input_ids, attention_mask, token_type_ids=None):
        return self.model(input_ids, attention_mask, token_type_ids)


class LateGraph(nn.Module):
    """LateInteraction.forward without the final padding to max_length (a batching detail)."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, input_ids, attention_mask, vector_mask, token_type_ids=None):
        hidden = self.model.backbone(input_ids=input_ids, attention_mask=attention_mask,
                                     token_type_ids=token_type_ids).last_hidden_state
        vectors = F.normalize(self.model.projection(hidden), dim=-1)
        return vectors * vector_mask.unsqueeze(-1).to(vectors.dtype)


def _token_inputs(tokenizer) -> list[str]:
    """The token inputs this tokenizer produces (BERT: with token_type_ids; RoBERTa-likes: without)."""
    produced = tokenizer(["a"], return_tensors="pt").keys()
    return [name for name in TOKEN_INPUTS if name in produced]


def _example(tokenizer, names: list[str]) -> dict[str, torch.Tensor]:
    # Two rows of different lengths, so the batch and token axes are exported as dynamic.
    batch = tokenizer(["an example passage for the export", "short"], padding=True, return_tensors="pt")
    return {name: batch[name] for name in names}


def export_graph(graph: nn.Module, inputs: dict[str, torch.Tensor], output: str, path: Path,
                 dynamic_output_axes: int = 1) -> None:
    """Export `graph(**inputs)` to `path` (weights inside the file), batch and token axes dynamic."""
    batch, tokens = torch.export.Dim("batch"), torch.export.Dim("tokens")
    path.parent.mkdir(parents=True, exist_ok=True)
    graph.eval()
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # the exporter's notes on its own internals
        logging.getLogger("torch.onnx").setLevel(logging.ERROR)
        program = torch.onnx.export(graph, (), kwargs=inputs, dynamo=True, input_names=list(inputs),
                                    output_names=[output], opset_version=OPSET, verbose=False,
                                    dynamic_shapes={name: {0: batch, 1: tokens} for name in inputs})
    tmp = path.with_suffix(f".tmp{os.getpid()}.onnx")
    program.save(str(tmp), external_data=False)
    fuse_for_onnxruntime(tmp)
    tmp.replace(path)


def fuse_for_onnxruntime(path: Path) -> dict[str, int]:
    """Rewrite the graph in place with onnxruntime's fused kernels (onnxscript's ORT fusions): attention,
    skip + layer norm, bias + GELU. The dynamo graph spells attention out op by op, which onnxruntime's
    own session optimizer does not recognise; fused, fp32 and int8 both run faster, with the same outputs
    to rounding. The fused ops are onnxruntime's (com.microsoft domain): the files are for onnxruntime."""
    import onnx_ir as ir
    from onnxscript.rewriter.ort_fusions import optimize_for_ort

    model, counts = optimize_for_ort(ir.load(str(path)))
    ir.save(model, str(path))
    return {name: n for name, n in counts.items() if n}


def quantize_int8(src: Path, dst: Path) -> Path:
    """onnxruntime dynamic int8 quantization of the MatMuls (weights per output channel)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    tmp = dst.with_suffix(f".tmp{os.getpid()}.onnx")  # several processes may quantize the same export
    quantize_dynamic(str(src), str(tmp), weight_type=QuantType.QInt8, per_channel=True)
    tmp.replace(dst)
    return dst


def int8_name(file: str) -> str:
    return file.replace(".onnx", "_int8.onnx")


def _write_meta(path: Path, meta: dict) -> None:
    (path / ONNX_META).write_text(json.dumps(meta, indent=2) + "\n")


def read_meta(path: str | Path) -> dict:
    return json.loads((Path(path) / ONNX_META).read_text())


def export_encoder(encoder, path: str | Path, adapter: nn.Module | None = None, int8: bool = False) -> Path:
    """Bi-encoder -> `path/model.onnx` (+ `query.onnx` with the adapter folded in, + `*_int8.onnx`)."""
    path = Path(path)
    names = _token_inputs(encoder.tokenizer)
    inputs = _example(encoder.tokenizer, names)
    was_training = encoder.training
    encoder.eval()
    export_graph(EncoderGraph(encoder), inputs, "sentence_embedding", path / MODEL_FILE)
    files = {"doc": MODEL_FILE, "query": MODEL_FILE}
    if adapter is not None:
        export_graph(EncoderGraph(encoder, adapter.eval()), inputs, "sentence_embedding", path / QUERY_FILE)
        files["query"] = QUERY_FILE
    encoder.train(was_training)
    if int8:
        for file in set(files.values()):
            quantize_int8(path / file, path / int8_name(file))
    encoder.tokenizer.save_pretrained(path)
    cfg = encoder.cfg
    _write_meta(path, {
        "kind": "bi_encoder", "inputs": names, "output": "sentence_embedding", "files": files,
        "query_prefix": cfg.query_prefix, "doc_prefix": cfg.doc_prefix, "query_max_length": cfg.query_max_length,
        "doc_max_length": cfg.doc_max_length, "pooling": cfg.pooling, "normalize": cfg.normalize,
        "adapter": adapter.meta() if adapter is not None else None,
    })
    return path


def export_cross_encoder(model, path: str | Path, int8: bool = False) -> Path:
    """Cross-encoder -> `path/model.onnx` (+ `model_int8.onnx`): pair tokens -> logits (B,)."""
    path = Path(path)
    names = _token_inputs(model.tokenizer)
    batch = model.tokenize(["a query", "q"], ["an example passage for the export", "short"])
    was_training = model.training
    model.eval()
    export_graph(CrossEncoderGraph(model), {n: batch[n] for n in names}, "logits", path / MODEL_FILE)
    model.train(was_training)
    if int8:
        quantize_int8(path / MODEL_FILE, path / int8_name(MODEL_FILE))
    model.tokenizer.save_pretrained(path)
    _write_meta(path, {"kind": "cross_encoder", "inputs": names, "output": "logits",
                       "files": {"pair": MODEL_FILE}, "max_length": model.max_length,
                       "query_max_length": model.query_max_length, "doc_template": model.doc_template})
    return path


def export_late_interaction(model, path: str | Path, int8: bool = False) -> Path:
    """Late interaction -> `path/model.onnx`: tokens + vector_mask -> token vectors (B, T, dim)."""
    path = Path(path)
    names = _token_inputs(model.tokenizer)
    batch = model.tokenize(["an example passage for the export, with punctuation.", "short"], "doc")
    vector_mask = batch.get("vector_mask", batch["attention_mask"])
    inputs = {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"], "vector_mask": vector_mask,
              **({"token_type_ids": batch["token_type_ids"]} if "token_type_ids" in names else {})}
    was_training = model.training
    model.eval()
    export_graph(LateGraph(model), inputs, "token_vectors", path / MODEL_FILE)
    model.train(was_training)
    if int8:
        quantize_int8(path / MODEL_FILE, path / int8_name(MODEL_FILE))
    model.tokenizer.save_pretrained(path)
    cfg, late = model.cfg, model.late
    _write_meta(path, {"kind": "late_interaction", "inputs": list(inputs), "output": "token_vectors",
                       "files": {"doc": MODEL_FILE, "query": MODEL_FILE}, "dim": late.dim,
                       "query_prefix": cfg.query_prefix, "doc_prefix": cfg.doc_prefix,
                       "query_length": late.query_length, "doc_max_length": cfg.doc_max_length,
                       "query_expansion": late.query_expansion, "attend_to_expansion": late.attend_to_expansion,
                       "mask_punctuation": late.mask_punctuation})
    return path


def export_onnx(model, path: str | Path, adapter: nn.Module | None = None, int8: bool = False) -> Path:
    """Whichever of the three `model` is (Encoder, CrossEncoder, LateInteraction)."""
    from ragtune.models.cross_encoder import CrossEncoder
    from ragtune.models.encoder import Encoder
    from ragtune.models.late_interaction import LateInteraction

    if isinstance(model, Encoder):
        return export_encoder(model, path, adapter, int8)
    if adapter is not None:
        raise ValueError("a query adapter folds into a bi-encoder's query graph only")
    if isinstance(model, CrossEncoder):
        return export_cross_encoder(model, path, int8)
    if isinstance(model, LateInteraction):
        return export_late_interaction(model, path, int8)
    raise TypeError(f"no ONNX export for {type(model).__name__}")
