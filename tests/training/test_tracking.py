"""W&B mode resolution: the environment wins, online falls back to offline, a failing init is survived.

Network rule for this file: only 127.0.0.1 is ever contacted, and no wandb run is started.
"""

import socket
import time

import pytest

from ragtune.config import ExperimentConfig, LogConfig
from ragtune.training import tracking
from ragtune.training.tracking import host_reachable, resolve_wandb_mode, start_tracking, tracker_kwargs, wandb_endpoint

PROXY_VARS = ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY")


@pytest.fixture
def clean_env(monkeypatch):
    """No W&B or proxy settings from the machine, and no mode remembered from an earlier test."""
    for name in ("WANDB_MODE", "WANDB_DISABLED", "WANDB_BASE_URL", *PROXY_VARS):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(tracking, "_written_mode", None)
    return monkeypatch


def _cfg(tmp_path, mode: str) -> ExperimentConfig:
    return ExperimentConfig(output_dir=str(tmp_path / "run"), log=LogConfig(wandb=mode))


def _closed_port() -> int:
    """A loopback port nothing listens on: bound, then released."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("configured,environ,expected", [
    ("offline", {}, ("offline", None)),
    ("offline", {"WANDB_MODE": ""}, ("offline", None)),
    ("online", {"WANDB_MODE": "online"}, ("online", None)),  # same mode: nothing to say
    ("offline", {"WANDB_MODE": "disabled"},
     ("disabled", "W&B: WANDB_MODE=disabled in the environment overrides log.wandb=offline")),
    ("disabled", {"WANDB_MODE": "dryrun"},
     ("offline", "W&B: WANDB_MODE=dryrun in the environment overrides log.wandb=disabled")),
    ("online", {"WANDB_DISABLED": "true", "WANDB_MODE": "online"},
     ("disabled", "W&B: WANDB_DISABLED=true in the environment overrides log.wandb=online")),
    ("offline", {"WANDB_DISABLED": "false"}, ("offline", None)),
])
def test_resolve_wandb_mode_environment_wins(configured, environ, expected):
    assert resolve_wandb_mode(configured, environ) == expected


def test_resolve_wandb_mode_rejects_bad_values_in_one_line():
    with pytest.raises(ValueError) as err:
        resolve_wandb_mode("offline", {"WANDB_MODE": "ofline"})
    assert str(err.value) == ("WANDB_MODE='ofline' in the environment (did you mean 'offline'?); "
                              "choose from ('offline', 'online', 'disabled')")
    with pytest.raises(ValueError) as err:
        resolve_wandb_mode("foo", {})
    assert str(err.value) == "log.wandb='foo'; choose from ('offline', 'online', 'disabled')"


def test_tracker_kwargs_honours_wandb_mode_disabled(clean_env, tmp_path, capsys):
    # Before: log.wandb=offline overwrote WANDB_MODE=disabled and an offline run was written.
    clean_env.setenv("WANDB_MODE", "disabled")
    assert tracker_kwargs(_cfg(tmp_path, "offline")) == {}
    assert capsys.readouterr().out == "W&B: WANDB_MODE=disabled in the environment overrides log.wandb=offline\n"
    assert tracking.os.environ["WANDB_MODE"] == "disabled"
    clean_env.setenv("WANDB_DISABLED", "true")
    clean_env.setenv("WANDB_MODE", "offline")
    assert tracker_kwargs(_cfg(tmp_path, "offline")) == {}


def test_tracker_kwargs_stores_the_configured_mode_and_a_later_run_follows_its_own(clean_env, tmp_path, capsys):
    assert tracker_kwargs(_cfg(tmp_path, "disabled")) == {}
    assert tracking.os.environ["WANDB_MODE"] == "disabled"
    # The WANDB_MODE this process wrote is not a user's override for the next run in it.
    assert tracker_kwargs(_cfg(tmp_path, "offline")) == {"log_with": "wandb", "project_dir": str(tmp_path / "run")}
    assert tracking.os.environ["WANDB_MODE"] == "offline"
    assert capsys.readouterr().out == ""


def test_online_without_a_reachable_host_falls_back_to_offline_quickly(clean_env, tmp_path, capsys):
    port = _closed_port()
    clean_env.setenv("WANDB_BASE_URL", f"http://127.0.0.1:{port}")
    start = time.perf_counter()
    kwargs = tracker_kwargs(_cfg(tmp_path, "online"))
    assert time.perf_counter() - start < 3  # a refused connect does not wait for the timeout
    assert kwargs == {"log_with": "wandb", "project_dir": str(tmp_path / "run")}
    assert tracking.os.environ["WANDB_MODE"] == "offline"
    assert capsys.readouterr().out == (
        f"W&B: cannot reach 127.0.0.1:{port} within 3s; logging offline instead "
        f"(upload later with `wandb sync {tmp_path / 'run' / 'wandb'}/offline-run-*`)\n")


def test_online_with_a_reachable_host_stays_online(clean_env, tmp_path, capsys):
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        clean_env.setenv("WANDB_BASE_URL", f"http://127.0.0.1:{server.getsockname()[1]}")
        tracker_kwargs(_cfg(tmp_path, "online"))  # only checks the host: no wandb run starts here
    assert tracking.os.environ["WANDB_MODE"] == "online" and capsys.readouterr().out == ""


def test_host_reachable_is_bounded_even_when_connect_hangs(monkeypatch):
    def hang(*args, **kwargs):  # a DNS lookup or SYN that never answers
        time.sleep(2)
        raise OSError("timed out")

    monkeypatch.setattr(tracking.socket, "create_connection", hang)
    start = time.perf_counter()
    assert host_reachable("127.0.0.1", 1, timeout=0.2) is False
    assert time.perf_counter() - start < 1


@pytest.mark.parametrize("environ,expected", [
    ({}, ("api.wandb.ai", 443)),
    ({"WANDB_BASE_URL": "http://127.0.0.1:8080"}, ("127.0.0.1", 8080)),
    ({"WANDB_BASE_URL": "https://wandb.example.org"}, ("wandb.example.org", 443)),
    ({"WANDB_BASE_URL": "http://wandb.example.org"}, ("wandb.example.org", 80)),
    ({"HTTPS_PROXY": "http://proxy.example.org:3128"}, ("proxy.example.org", 3128)),
    ({"https_proxy": "proxy.example.org:8888"}, ("proxy.example.org", 8888)),
    ({"WANDB_BASE_URL": "http://127.0.0.1:9", "HTTPS_PROXY": "http://proxy.example.org:1"}, ("127.0.0.1", 9)),
])
def test_wandb_endpoint(environ, expected):
    assert wandb_endpoint(environ) == expected  # pure: nothing is contacted


class FakeAccelerator:
    """Mimics accelerate: the tracker is appended before its start (wandb.init) runs, and fails."""

    is_main_process = True

    def __init__(self, error: Exception | None = None):
        self.trackers, self.error, self.calls = [], error, 0

    def init_trackers(self, project_name, config=None, init_kwargs=None):
        self.calls += 1
        self.trackers.append("wandb tracker")
        if self.error:
            raise self.error


def test_start_tracking_survives_a_failing_init(clean_env, tmp_path, capsys):
    clean_env.setenv("WANDB_MODE", "offline")
    accelerator = FakeAccelerator(RuntimeError("Run initialization has timed out after 90.0 sec.\n Please retry."))
    start_tracking(accelerator, _cfg(tmp_path, "offline"))
    assert accelerator.calls == 1 and accelerator.trackers == []  # accelerator.log/end_training skip it
    assert tracking.os.environ["WANDB_MODE"] == "disabled"
    assert capsys.readouterr().out == (
        "W&B: init failed (RuntimeError: Run initialization has timed out after 90.0 sec.); continuing without "
        f"W&B (metrics still go to {tmp_path / 'run' / 'metrics.jsonl'})\n")


def test_start_tracking_reads_the_mode_from_the_environment(clean_env, tmp_path):
    clean_env.setenv("WANDB_MODE", "disabled")
    accelerator = FakeAccelerator()
    start_tracking(accelerator, _cfg(tmp_path, "offline"))
    assert accelerator.calls == 0
    clean_env.setenv("WANDB_MODE", "offline")
    start_tracking(accelerator, _cfg(tmp_path, "disabled"))
    assert accelerator.calls == 1 and accelerator.trackers == ["wandb tracker"]
