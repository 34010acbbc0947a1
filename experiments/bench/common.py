"""Shared benchmark helpers: one subprocess per trial, peak memory, interleaving, tables.

Each trial runs a worker function `module:fn(**kwargs) -> dict` in a fresh Python process, so
peak memory belongs to that configuration alone (allocator caches, imported libraries). The
child reports its own peak RSS (VmHWM, see `peak_rss_mb`). The worker calls
`mark_loaded()` after loading its model, so "peak minus RSS after load" (activ_mb) shows the
activation / gradient / optimizer memory on its own.

The machine is shared: configurations are interleaved A, B, A, B... within one invocation and
compared by the median of per-repeat ratios, which cancels slow drifts in background load.
"""

from __future__ import annotations

import importlib
import json
import os
import resource
import statistics
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
RESULT_TAG = "BENCH_RESULT "
_loaded_rss_mb: float | None = None


def rss_mb() -> float:
    """Current resident set size of this process (VmRSS), MiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def peak_rss_mb() -> float:
    """This process's peak resident set size (VmHWM), MiB. Not getrusage's ru_maxrss: on Linux a
    child carries its parent's peak across exec in it, so a small child of a big driver reads big."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def mark_loaded() -> None:
    """Call in a worker once the model (and data) are in memory, before the measured work."""
    global _loaded_rss_mb
    _loaded_rss_mb = rss_mb()


def run_trial(module: str, fn: str, kwargs: dict, threads: int = 1, timeout: float = 3600,
              python: str = sys.executable) -> dict:
    """Run `module.fn(**kwargs)` in a child process; its dict plus peak_mb, loaded_mb, activ_mb.

    `python`: the interpreter of another environment (a peer whose pins conflict with ragtune's)."""
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads),
               TOKENIZERS_PARALLELISM="false", PYTHONPATH=f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}")
    cmd = [python, "-m", "experiments.bench.common", module, fn, json.dumps(kwargs), str(threads)]
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise
    lines = [line for line in out.splitlines() if line.startswith(RESULT_TAG)]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"trial {module}:{fn}({kwargs}) failed (exit {proc.returncode}):\n{err[-3000:]}")
    return json.loads(lines[-1][len(RESULT_TAG):])


def _worker_main(module: str, fn: str, kwargs_json: str, threads: str) -> None:
    import torch

    torch.set_num_threads(int(threads))
    result = getattr(importlib.import_module(module), fn)(**json.loads(kwargs_json))
    peak = peak_rss_mb()
    # Run as `-m`, this file is __main__; the worker's mark_loaded() set the imported module's copy.
    loaded = importlib.import_module("experiments.bench.common")._loaded_rss_mb
    loaded = loaded if loaded is not None else float("nan")
    result.update(peak_mb=peak, loaded_mb=loaded, activ_mb=peak - loaded)
    print(RESULT_TAG + json.dumps(result), flush=True)


def interleave(configs: dict[str, tuple[str, str, dict]], repeats: int, threads: int,
               log: Callable[[str], None] = lambda s: print(s, flush=True)) -> dict[str, list[dict]]:
    """{name: (module, fn, kwargs)} -> {name: [result per repeat]}, run A, B, A, B..."""
    results: dict[str, list[dict]] = {name: [] for name in configs}
    for r in range(repeats):
        for name, (module, fn, kwargs) in configs.items():
            res = run_trial(module, fn, kwargs, threads)
            results[name].append(res)
            log(f"  repeat {r + 1}/{repeats} {name}: " + ", ".join(
                f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in res.items()))
    return results


def median_ratio(a: list[dict], b: list[dict], key: str) -> float:
    """Median over repeats of a[i][key] / b[i][key] (paired: same repeat, similar background load)."""
    return statistics.median(x[key] / y[key] for x, y in zip(a, b, strict=True))


def print_table(rows: list[dict], columns: list[str]) -> str:
    """A markdown table of `rows` (dicts) in `columns` order; floats to 4 significant digits."""
    def fmt(v):
        return f"{v:.4g}" if isinstance(v, float) else str(v)

    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(fmt(row.get(c, "")) for c in columns) + " |" for row in rows]
    text = "\n".join(lines)
    print(text)
    return text


def summarize(results: dict[str, list[dict]], keys: list[str]) -> list[dict]:
    """One row per config: the median over repeats of each key."""
    return [{"config": name, **{k: statistics.median(r[k] for r in runs) for k in keys}}
            for name, runs in results.items()]


if __name__ == "__main__":
    _worker_main(*sys.argv[1:5])
