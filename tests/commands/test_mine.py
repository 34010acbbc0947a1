"""`ragtune mine` end to end on the tiny BEIR folder: one record per train pair, no positive as a negative."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.commands.test_run import CONFIG
from tests.conftest import REPO


def test_mine_writes_records_and_stats(tmp_path, subprocess_env, tiny_model_dir, tiny_data_root):
    config = tmp_path / "c.py"
    config.write_text(CONFIG.format(task="eval", out=str(tmp_path / "run"), model=str(tiny_model_dir),
                                    root=str(tiny_data_root)))
    out = tmp_path / "mined.jsonl"
    proc = subprocess.run([sys.executable, "-m", "ragtune", "mine", "--config", str(config), "--mining.source=bm25",
                           "--mining.num_negatives=3", "--mining.num_random=1", "--out", str(out)], cwd=REPO,
                          env=subprocess_env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    records = [json.loads(line) for line in out.read_text().splitlines()]
    train = {}
    for line in (tiny_data_root / "tiny" / "qrels" / "train.tsv").read_text().splitlines()[1:]:
        q, d, _ = line.split("\t")
        train.setdefault(q, set()).add(d)
    assert {r["qid"] for r in records} == set(train) and len(records) == sum(map(len, train.values()))
    assert all(r["pos_id"] in train[r["qid"]] and not set(r["neg_ids"]) & train[r["qid"]] for r in records)
    assert all(1 <= len(r["neg_ids"]) <= 4 for r in records)  # up to 3 mined + 1 random
    stats = json.loads((tmp_path / "mined.jsonl.stats.json").read_text())
    assert stats["records"] == len(records) and stats["source"] == "bm25" and stats["queries"] == len(train)
