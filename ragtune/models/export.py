"""Export a trained Encoder in the sentence-transformers folder layout, written by hand.

`SentenceTransformer(path)` then loads it directly and gives the same embeddings (checked to 1e-5
in tests/test_interop.py). We write the classic layout (modules.json with
`sentence_transformers.models.*` types and `pooling_mode_*` flags) because every
sentence-transformers release from 2.x to 6.x reads it; newer releases map the old names.
No sentence-transformers import here: it is a peer, not a dependency (see DESIGN.md).

Layout::

    path/
      config.json, model.safetensors, tokenizer*   HF weights + tokenizer (module 0, path "")
      modules.json                                   Transformer -> Pooling [-> Normalize]
      sentence_bert_config.json                      max_seq_length, do_lower_case
      config_sentence_transformers.json              prompts (our query/doc prefixes), similarity
      1_Pooling/config.json                          the pooling method
      2_Normalize/                                   only when the encoder L2-normalises
      ragtune_encoder.json                           so Encoder.load reads the folder back too

sentence-transformers has one max_seq_length for all inputs: we write the document length.
Queries longer than `query_max_length` tokens would then be cut later by ST than by ragtune,
so `max_seq_length` can be set to the query length for a query-side export.
"""

from __future__ import annotations

import json
from pathlib import Path

from ragtune.models.encoder import Encoder

# ragtune pooling -> the sentence-transformers Pooling flag that computes the same thing.
POOLING_FLAGS = {
    "cls": "pooling_mode_cls_token",
    "mean": "pooling_mode_mean_tokens",
    "max": "pooling_mode_max_tokens",
    "last": "pooling_mode_lasttoken",
}
ALL_FLAGS = ("pooling_mode_cls_token", "pooling_mode_mean_tokens", "pooling_mode_max_tokens",
             "pooling_mode_mean_sqrt_len_tokens", "pooling_mode_weightedmean_tokens", "pooling_mode_lasttoken")


def _write_json(path: Path, obj: dict | list) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, indent=2) + "\n")


def sentence_transformers_files(encoder: Encoder, max_seq_length: int | None = None) -> dict[str, dict | list]:
    """{relative path: JSON content} of the sentence-transformers metadata for `encoder`."""
    cfg = encoder.cfg
    if cfg.pooling not in POOLING_FLAGS:
        raise ValueError(f"pooling '{cfg.pooling}' has no sentence-transformers equivalent ({sorted(POOLING_FLAGS)})")
    modules = [
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
    ]
    if cfg.normalize:
        modules.append({"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"})
    pooling = {"word_embedding_dimension": encoder.backbone.config.hidden_size,
               **{flag: flag == POOLING_FLAGS[cfg.pooling] for flag in ALL_FLAGS}, "include_prompt": True}
    prompts = {"query": cfg.query_prefix, "document": cfg.doc_prefix}
    return {
        "modules.json": modules,
        "sentence_bert_config.json": {"max_seq_length": max_seq_length or cfg.doc_max_length, "do_lower_case": False},
        "config_sentence_transformers.json": {"prompts": prompts, "default_prompt_name": None,
                                              "similarity_fn_name": "cosine" if cfg.normalize else "dot"},
        "1_Pooling/config.json": pooling,
    }


def export_sentence_transformers(encoder: Encoder, path: str | Path, max_seq_length: int | None = None) -> Path:
    """Write `encoder` to `path` so that `SentenceTransformer(str(path))` loads it as is.

    Prefixes become ST prompts: encode queries with `model.encode(texts, prompt_name="query")`
    (or `model.encode_query` in ST >= 5) to reproduce `encoder.encode(texts, "query")`.
    """
    path = Path(path)
    encoder.save(path)  # HF weights + tokenizer + ragtune_encoder.json
    for rel, content in sentence_transformers_files(encoder, max_seq_length).items():
        _write_json(path / rel, content)
    if encoder.cfg.normalize:
        (path / "2_Normalize").mkdir(exist_ok=True)  # Normalize has no parameters, only a folder
    return path


def pylate_files(model) -> dict[str, dict | list]:
    """{relative path: JSON content} that make a late-interaction folder a PyLate ColBERT folder:
    the Transformer, then PyLate's Dense projection (no bias, identity), with ragtune's settings
    as PyLate names them. PyLate L2-normalises after the projection and drops punctuation
    (`skiplist_words`) from documents, as ragtune does."""
    import string

    cfg, late = model.cfg, model.late
    return {
        "modules.json": [
            {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
            {"idx": 1, "name": "1", "path": "1_Dense", "type": "pylate.models.Dense.Dense"},
        ],
        "sentence_bert_config.json": {"max_seq_length": cfg.doc_max_length, "do_lower_case": False},
        "config_sentence_transformers.json": {
            "prompts": {}, "default_prompt_name": None, "similarity_fn_name": "MaxSim",
            "query_prefix": cfg.query_prefix, "document_prefix": cfg.doc_prefix,
            "query_length": late.query_length, "document_length": cfg.doc_max_length,
            "attend_to_expansion_tokens": late.attend_to_expansion, "do_query_expansion": late.query_expansion,
            "skiplist_words": list(string.punctuation) if late.mask_punctuation else [],
        },
        "1_Dense/config.json": {"in_features": model.backbone.config.hidden_size, "out_features": late.dim,
                                "bias": False, "activation_function": "torch.nn.modules.linear.Identity",
                                "use_residual": False},
    }


def export_late_interaction(model, path: str | Path) -> Path:
    """Write a LateInteraction to `path`: `LateInteraction.load(path)` reads it back, and the same
    folder carries PyLate's layout (`pylate.models.ColBERT(path)`; checked in tests/test_interop.py
    when PyLate is installed)."""
    from safetensors.torch import save_file

    path = Path(path)
    model.save(path)  # HF weights + tokenizer + projection + ragtune_late_interaction.json
    for rel, content in pylate_files(model).items():
        _write_json(path / rel, content)
    save_file({"linear.weight": model.projection.weight.detach().cpu().contiguous()},
              str(path / "1_Dense" / "model.safetensors"))
    return path
