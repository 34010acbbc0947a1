"""Mine hard negatives for the config's dataset / train split and write training records (JSONL).

    ragtune mine --config configs/scifact_zeroshot.py --mining.source=dense \\
        --out runs/mined/scifact_dense.jsonl [--mining.rank_end=30 --mining.num_negatives=8 ...]

All train queries are mined, dev hold-out included: the training task drops dev queries by
qid. Settings come from `mining.*` (ragtune/retrieval/mining.py explains the window and the false-negative
filter), the dense source uses `model.*` (corpus embeddings from the cache), BM25 uses `bm25.*`.
Prints and writes (<out>.stats.json) the counts; train with `--data.train_file=<out>`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ragtune.commands import parse_config_args
from ragtune.config import ConfigError
from ragtune.data.beir import DataError
from ragtune.retrieval.mine_file import mine


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
                                     add_help=False)
    parser.add_argument("-h", "--help", action="store_true", help="this help and every config key")
    parser.add_argument("--out", required=True, help="output JSONL (e.g. runs/mined/scifact_dense.jsonl)")
    try:
        parsed = parse_config_args(parser, argv)
        if parsed is None:
            return 0
        args, cfg = parsed
        stats = mine(cfg, Path(args.out))
    except (ConfigError, DataError, FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    for key, value in stats.items():
        print(f"{key:28s} {value:.3f}" if isinstance(value, float) else f"{key:28s} {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
