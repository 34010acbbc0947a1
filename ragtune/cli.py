"""`ragtune <command> ...` and `python -m ragtune <command> ...`: one entry point for every command.

    ragtune run --config configs/scifact_adapter.py [--section.key=value ...] [--help]
    ragtune sweep configs/sweeps/scifact_ablation.py
    ragtune cv --config configs/cranfield_adapter.py --folds 5
    ragtune ladder --data.data_root=DIR --data.dataset=NAME
    ragtune adapt --config configs/scifact_adapt.py   # no labels: synthetic queries -> pseudo-labels -> train
    ragtune export-onnx runs/scifact_biencoder/model --out deploy/biencoder --int8
    ragtune mine | encode | chroma | synth | grounded-reference | verify-lora-reload ...

Each command is a module of ragtune/commands with a `main(argv) -> exit code`.
"""

from __future__ import annotations

import difflib
import importlib
import sys

COMMANDS = {
    "run": ("ragtune.commands.run", "build a task from a config, train it if it trains, evaluate, save"),
    "sweep": ("ragtune.commands.sweep", "every variant of an ablation sweep, then a table and plots"),
    "cv": ("ragtune.commands.cv", "k-fold cross-validation over the eval split's queries"),
    "compare": ("ragtune.commands.compare", "paired significance test and CI: a run vs its baseline, or two runs"),
    "ladder": ("ragtune.commands.ladder", "zero-shot, BM25, hybrid, adapter, bi-encoder on any BEIR folder"),
    "mine": ("ragtune.commands.mine", "mine hard negatives into a training JSONL"),
    "encode": ("ragtune.commands.encode", "fill the embedding cache with the corpus, sharded over processes"),
    "chroma": ("ragtune.commands.chroma", "a corpus in ChromaDB queried with the (adapted) query side vs exact"),
    "synth": ("ragtune.commands.synth", "synthetic queries from a causal LM into a training JSONL"),
    "adapt": ("ragtune.commands.adapt", "no labels: synthetic queries, teacher pseudo-labels, training, test"),
    "export-onnx": ("ragtune.commands.export_onnx", "a saved model to ONNX for onnxruntime, checked against torch"),
    "teacher-scores": ("ragtune.tasks.reranker", "a saved reranker's scores on train groups, for distillation"),
    "grounded-reference": ("ragtune.commands.grounded_reference", "reference scores of grounded answers"),
    "verify-lora-reload": ("ragtune.commands.verify_lora_reload", "reload a saved LoRA generator and compare"),
}


def usage() -> str:
    width = max(map(len, COMMANDS))
    rows = "\n".join(f"  {name:<{width}}  {what}" for name, (_, what) in COMMANDS.items())
    return f"usage: ragtune <command> [args ...]   (ragtune <command> --help for its arguments)\n\ncommands:\n{rows}"


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in {"-h", "--help"}:
        print(usage())
        return 0 if argv else 2
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        close = difflib.get_close_matches(name, list(COMMANDS), n=1)
        hint = f"; did you mean '{close[0]}'?" if close else ""
        print(f"error: unknown command '{name}'{hint}\n\n{usage()}", file=sys.stderr)
        return 2
    module = importlib.import_module(COMMANDS[name][0])
    sys.argv = [f"ragtune {name}", *rest]  # argparse's usage line names the command
    return module.main(rest)


if __name__ == "__main__":
    sys.exit(main())
