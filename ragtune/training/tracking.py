"""Experiment tracking: W&B through accelerate (offline by default) and a local metrics.jsonl.

Offline W&B needs no network; upload later with `wandb sync <output_dir>/wandb/offline-run-*`.
metrics.jsonl is always written by the main process, one JSON object per logged step.

The W&B mode is decided once, in `tracker_kwargs`, and handed to `start_tracking` (and to wandb
itself, which reads it) through the environment variable WANDB_MODE:
  1. WANDB_DISABLED=true or WANDB_MODE in the environment wins over log.wandb, as it does for
     wandb on its own (a line is printed when the two differ);
  2. online mode with the W&B host unreachable falls back to offline, with a line saying how to
     sync later, instead of failing minutes later inside wandb.init;
  3. if wandb.init fails anyway, the run continues without W&B (metrics.jsonl is still written).
"""

from __future__ import annotations

import difflib
import json
import os
import socket
import threading
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import urlsplit

from ragtune.config import flatten

WANDB_MODES = ("offline", "online", "disabled")
# Other values wandb accepts for WANDB_MODE, as the mode they behave like here.
WANDB_ALIASES = {"dryrun": "offline", "run": "online", "shared": "online"}
TRUE_VALUES = {"1", "true", "yes", "on"}  # WANDB_DISABLED, as Hugging Face tools read it
DEFAULT_BASE_URL = "https://api.wandb.ai"
CONNECT_TIMEOUT_S = 3.0

_written_mode: str | None = None  # the WANDB_MODE this process set itself, see _user_environ


def canonical_mode(value: str) -> str:
    """One of WANDB_MODES for any value wandb accepts in WANDB_MODE; a one-line error otherwise."""
    mode = WANDB_ALIASES.get(value.strip().lower(), value.strip().lower())
    if mode not in WANDB_MODES:
        close = difflib.get_close_matches(mode, [*WANDB_MODES, *WANDB_ALIASES], n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        raise ValueError(f"WANDB_MODE='{value}' in the environment{hint}; choose from {WANDB_MODES}")
    return mode


def resolve_wandb_mode(configured: str, environ: Mapping[str, str]) -> tuple[str, str | None]:
    """(mode, message): the environment's WANDB_DISABLED / WANDB_MODE if set, else `configured`.

    The environment wins because that is how wandb itself behaves, and because it is how a user
    (or a test harness) turns W&B off for one command without editing configs. The message is
    the line to print when the environment overrides a different configured mode, else None.
    """
    if configured not in WANDB_MODES:
        raise ValueError(f"log.wandb='{configured}'; choose from {WANDB_MODES}")
    disabled = environ.get("WANDB_DISABLED", "")
    if disabled.strip().lower() in TRUE_VALUES:
        mode, source = "disabled", f"WANDB_DISABLED={disabled}"
    elif environ.get("WANDB_MODE"):
        mode, source = canonical_mode(environ["WANDB_MODE"]), f"WANDB_MODE={environ['WANDB_MODE']}"
    else:
        return configured, None
    if mode == configured:
        return mode, None
    return mode, f"W&B: {source} in the environment overrides log.wandb={configured}"


def wandb_endpoint(environ: Mapping[str, str]) -> tuple[str, int]:
    """(host, port) online mode first connects to: WANDB_BASE_URL, else api.wandb.ai:443, or the
    proxy for that scheme when one is set (HTTPS_PROXY...), so clusters that reach W&B only
    through a proxy are not wrongly sent offline."""
    url = urlsplit(environ.get("WANDB_BASE_URL") or DEFAULT_BASE_URL)
    scheme = url.scheme or "https"
    proxy = environ.get(f"{scheme}_proxy") or environ.get(f"{scheme.upper()}_PROXY")
    if proxy:
        url = urlsplit(proxy if "://" in proxy else f"http://{proxy}")
    return url.hostname or "", url.port or (443 if url.scheme == "https" else 80)


def host_reachable(host: str, port: int, timeout: float = CONNECT_TIMEOUT_S) -> bool:
    """Whether a TCP connection to host:port opens within `timeout` seconds, name lookup included.

    The connect runs in a daemon thread so a hanging DNS lookup (which socket timeouts do not
    cover) cannot stretch the wait either; without network wandb.init itself takes ~90 s to fail.
    """
    opened: list[bool] = []

    def connect() -> None:
        try:
            with socket.create_connection((host, port), timeout=timeout):
                opened.append(True)
        except (OSError, UnicodeError):
            pass

    thread = threading.Thread(target=connect, daemon=True)
    thread.start()
    thread.join(timeout)
    return bool(opened)


def online_or_offline(environ: Mapping[str, str], output_dir: str) -> tuple[str, str | None]:
    """('online', None) when the W&B host answers, else ('offline', the line saying how to sync later)."""
    host, port = wandb_endpoint(environ)
    if host_reachable(host, port):
        return "online", None
    return "offline", (f"W&B: cannot reach {host}:{port} within {CONNECT_TIMEOUT_S:g}s; logging offline instead "
                       f"(upload later with `wandb sync {Path(output_dir) / 'wandb'}/offline-run-*`)")


def _user_environ() -> dict[str, str]:
    """os.environ without a WANDB_MODE this process wrote itself for an earlier run, so a second
    run in the same process (a notebook, a test) follows its own config, not the previous one's."""
    environ = dict(os.environ)
    if _written_mode is not None and environ.get("WANDB_MODE") == _written_mode:
        del environ["WANDB_MODE"]
    return environ


def _set_mode(mode: str, environ: Mapping[str, str]) -> None:
    """Hand the mode to wandb and start_tracking via WANDB_MODE; a user's equivalent value (say
    'dryrun' for offline) is left as they wrote it."""
    global _written_mode
    current = environ.get("WANDB_MODE")
    if current and current.strip().lower() in (*WANDB_MODES, *WANDB_ALIASES) and canonical_mode(current) == mode:
        return
    os.environ["WANDB_MODE"] = _written_mode = mode


def _is_main_rank() -> bool:
    """Rank 0 of a `accelerate launch` / torchrun job (or a plain process): the one W&B runs on."""
    return os.environ.get("RANK", "0") == "0"


def _say(message: str | None) -> None:
    """Print a one-line notice once per job (rank 0), not once per process."""
    if message and _is_main_rank():
        print(message, flush=True)


def tracker_kwargs(cfg) -> dict:
    """Arguments for Accelerator(...) that enable W&B when it ends up enabled.

    Decides the mode (environment, then log.wandb, then the online reachability check, see the
    module docstring) and stores it in os.environ["WANDB_MODE"] for wandb and start_tracking.
    """
    environ = _user_environ()
    mode, override = resolve_wandb_mode(cfg.log.wandb, environ)
    _say(override)
    if mode == "online" and _is_main_rank():
        mode, fallback = online_or_offline(environ, cfg.output_dir)
        _say(fallback)
    _set_mode(mode, environ)
    if mode == "disabled":
        return {}
    os.environ.setdefault("WANDB_SILENT", "true")
    return {"log_with": "wandb", "project_dir": cfg.output_dir}


def start_tracking(accelerator, cfg) -> None:
    """Start the W&B run in the mode tracker_kwargs left in os.environ["WANDB_MODE"].

    A failing wandb.init (bad API key, a network that drops after the check) is not worth losing
    the run over: one line is printed and training continues without W&B.
    """
    if canonical_mode(os.environ.get("WANDB_MODE", cfg.log.wandb)) == "disabled":
        return
    init = {"dir": cfg.output_dir, "name": cfg.log.run_name or Path(cfg.output_dir).name}
    if cfg.log.group:
        init["group"] = cfg.log.group
    try:
        accelerator.init_trackers(cfg.log.project, config=flatten(cfg), init_kwargs={"wandb": init})
    except Exception as e:  # any tracker failure: keep training, say why
        _drop_trackers(accelerator)
        if accelerator.is_main_process:
            print(f"W&B: init failed ({type(e).__name__}: {_first_line(e)}); continuing without W&B "
                  f"(metrics still go to {Path(cfg.output_dir) / 'metrics.jsonl'})", flush=True)


def _drop_trackers(accelerator) -> None:
    """Forget trackers whose start failed: accelerate appends them before starting them, and a
    half-started one would fail again at every accelerator.log and at end_training."""
    global _written_mode
    accelerator.trackers.clear()
    os.environ["WANDB_MODE"] = _written_mode = "disabled"


def _first_line(error: Exception) -> str:
    lines = str(error).strip().splitlines()
    return lines[0] if lines else "no message"


class MetricsLog:
    """Appends {'step': ..., **metrics} lines to <output_dir>/metrics.jsonl and forwards to trackers."""

    def __init__(self, accelerator, output_dir: str | Path):
        self.accelerator = accelerator
        self.path = Path(output_dir) / "metrics.jsonl"
        self.path.parent.mkdir(parents=True, exist_ok=True)

    def log(self, metrics: dict[str, float], step: int) -> None:
        if not self.accelerator.is_main_process:
            return
        with self.path.open("a") as f:
            f.write(json.dumps({"step": step, **metrics}) + "\n")
        self.accelerator.log(metrics, step=step)
