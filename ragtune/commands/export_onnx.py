"""Export a saved model to ONNX for onnxruntime, and check the export against torch.

    ragtune export-onnx runs/scifact_biencoder/model --out deploy/biencoder [--int8]
    ragtune export-onnx minilm --adapter runs/scifact_adapter/adapter --out deploy/adapted   # adapter folded in
    ragtune export-onnx runs/scifact_reranker/model --out deploy/reranker --int8

The folder kind is read from its ragtune metadata (a bi-encoder's ragtune_encoder.json, a reranker's
ragtune_cross_encoder.json, a late-interaction model's ragtune_late_interaction.json); an alias or a bare HF
encoder folder is exported as a bi-encoder with the default pooling. What is written:
ragtune/inference/onnx_export.py. The check runs each written file in onnxruntime on a few SciFact-like
texts and prints its largest difference to the torch model; fp32 must agree within --tolerance
(exit 1 otherwise); int8 files are reported as the cosine (bi-encoder) or score difference they give.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

CHECK_TEXTS = [
    "Vitamin D deficiency is associated with an increased risk of multiple sclerosis.",
    "A randomized controlled trial of aspirin for the primary prevention of cardiovascular events in adults "
    "with diabetes, followed for a median of 7.4 years.",
    "Tumour necrosis factor.",
]


def load_model(name: str):
    """(model, kind) for a saved ragtune folder, an alias or an HF encoder folder."""
    from ragtune.config import ModelConfig
    from ragtune.models.cross_encoder import CROSS_ENCODER_META, CrossEncoder
    from ragtune.models.encoder import ENCODER_META, Encoder, resolve_model_path
    from ragtune.models.late_interaction import LATE_META, LateInteraction

    path = resolve_model_path(name)
    if (path / CROSS_ENCODER_META).is_file():
        return CrossEncoder.from_pretrained(str(path)), "cross_encoder"
    if (path / LATE_META).is_file():
        return LateInteraction.load(path), "late_interaction"
    if (path / ENCODER_META).is_file():
        return Encoder.load(path), "bi_encoder"
    return Encoder.from_config(ModelConfig(name=name)), "bi_encoder"


def check(model, kind: str, folder: Path, adapter=None) -> list[tuple[str, float, str]]:
    """(file, max |onnx - torch|, note) for every graph in `folder`."""
    from ragtune.inference.backends import onnx_session
    from ragtune.inference.onnx_export import int8_name, read_meta

    meta = read_meta(folder)
    rows = []
    for side, file in meta["files"].items():
        if kind == "cross_encoder":
            batch = model.tokenize(CHECK_TEXTS[::-1], CHECK_TEXTS)
        else:
            batch = model.tokenize(CHECK_TEXTS, side if side in ("query", "doc") else "doc")
        if kind == "late_interaction":
            batch.setdefault("vector_mask", batch["attention_mask"])
        with torch.no_grad():
            if kind == "late_interaction":
                expected = model(**batch, kind=side).numpy()[:, :batch["input_ids"].shape[1]]
            else:
                expected = model(**{k: v for k, v in batch.items() if k != "vector_mask"}).numpy()
                if adapter is not None and side == "query":
                    expected = adapter(torch.from_numpy(expected)).numpy()
        for name in (file, int8_name(file)):
            if not (folder / name).is_file():
                continue
            session = onnx_session(folder / name)
            got = session.run(None, {n: batch[n].numpy() for n in meta["inputs"]})[0]
            note = ""
            if kind == "bi_encoder":
                cos = (got * expected).sum(-1) / np.linalg.norm(got, axis=-1) / np.linalg.norm(expected, axis=-1)
                note = f"min cosine to torch {cos.min():.5f}"
            rows.append((f"{side}: {name}", float(np.abs(got - expected).max()), note))
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", help="a saved ragtune model folder, an alias (minilm) or an HF encoder folder")
    parser.add_argument("--out", required=True, type=Path, help="folder to write (created; files replaced)")
    parser.add_argument("--adapter", default="", help="a query adapter folder to fold into the query graph")
    parser.add_argument("--int8", action="store_true", help="also write onnxruntime's dynamic int8 files")
    parser.add_argument("--tolerance", type=float, default=1e-4, help="largest fp32 difference to torch accepted")
    args = parser.parse_args(argv)
    try:
        import onnxruntime  # noqa: F401
        import onnxscript  # noqa: F401
    except ImportError as e:
        print(f"error: {e.name} is needed for ONNX export: pip install 'ragtune[onnx]'", file=sys.stderr)
        return 2
    from ragtune.inference.onnx_export import export_onnx
    from ragtune.models.adapter import load_adapter

    try:
        model, kind = load_model(args.model)
        adapter = load_adapter(args.adapter) if args.adapter else None
        if adapter is not None and kind != "bi_encoder":
            raise ValueError(f"--adapter folds into a bi-encoder's query graph; {args.model} is a {kind}")
        if adapter is not None and adapter.dim != model.backbone.config.hidden_size:
            raise ValueError(f"--adapter {args.adapter} maps {adapter.dim}-d embeddings; {args.model} gives "
                             f"{model.backbone.config.hidden_size}-d")
    except (FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    model.eval()
    export_onnx(model, args.out, adapter=adapter, int8=args.int8)
    rows = check(model, kind, args.out, adapter)
    failed = [r for r in rows if "int8" not in r[0] and r[1] > args.tolerance]
    print(f"{kind} exported to {args.out}; onnxruntime against torch on {len(CHECK_TEXTS)} texts:")
    for name, diff, note in rows:
        print(f"  {name:<28} max |diff| {diff:.2e}" + (f"  ({note})" if note else ""))
    if failed:
        print(f"error: fp32 graphs differ from torch by more than {args.tolerance}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
