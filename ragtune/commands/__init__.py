"""The `ragtune <command>` entry points (ragtune/cli.py dispatches to each module's main)."""

from __future__ import annotations

import argparse
import sys

from ragtune.config import ExperimentConfig, load_config, parse_cli_overrides


def parse_config_args(parser: argparse.ArgumentParser, argv: list[str] | None,
                      extra: dict[str, str] | None = None) -> tuple[argparse.Namespace, ExperimentConfig] | None:
    """`--config FILE` plus `--section.key=value` overrides (and `extra` ones), validated once.

    With -h/--help: the command's arguments, then every config key with its type, its value in
    FILE (the defaults without --config) and its comment; returns None (the caller exits 0).
    A bad file, key or value raises ConfigError naming it."""
    from ragtune.config_help import config_keys_help

    parser.add_argument("--config", required=True, help="a Python file exposing get_config()")
    argv = sys.argv[1:] if argv is None else list(argv)
    if {"-h", "--help"} & set(argv):
        print(parser.format_help())
        rest = [a for a in argv if a not in {"-h", "--help"}]
        path = rest[rest.index("--config") + 1] if "--config" in rest[:-1] else next(
            (a.split("=", 1)[1] for a in rest if a.startswith("--config=")), None)
        cfg = load_config(path) if path else ExperimentConfig()
        print(f"config keys ({path or 'defaults'}; set any with --section.key=value):\n{config_keys_help(cfg)}")
        return None
    args, rest = parser.parse_known_args(argv)
    return args, load_config(args.config, {**parse_cli_overrides(rest), **(extra or {})})
