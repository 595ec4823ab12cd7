"""``sampleplan serve --workers N``: N processes answer on one port."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import httpx
import pytest

from sampleplan.service.main import cli
from tests.helpers.servers import ServerProcess


def _children(pid: int) -> list[int]:
    """Worker processes of the uvicorn supervisor ``pid`` (spawned; not its resource tracker)."""
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        for child in (task / "children").read_text().split():
            cmdline = Path(f"/proc/{child}/cmdline").read_bytes()
            if b"spawn_main" in cmdline:
                found.append(int(child))
    return found


@pytest.mark.slow  # starts processes: `make test-quick` leaves it out
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_two_workers_serve_one_port(tmp_path: Path) -> None:
    env = {
        "SAMPLEPLAN_DATABASE_URL": f"sqlite:///{tmp_path / 'w.sqlite3'}",
        "SAMPLEPLAN_WORKERS": "2",
    }
    # Two workers import torch side by side: slow on a busy machine.
    server = ServerProcess(env, tmp_path / "server.log").launch().wait_ready(timeout=240)
    try:
        assert server.process is not None
        # Both workers start; readiness may come from the first one up.
        deadline = time.monotonic() + 60
        while len(_children(server.process.pid)) < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
        workers = _children(server.process.pid)
        assert len(workers) == 2
        labels = [0] * 30 + [1] * 5
        with httpx.Client(base_url=server.url, timeout=60) as client:
            plan = client.post("/v1/plans", json={"labels": labels}).json()["id"]
            pages = {
                tuple(
                    client.get(f"/v1/plans/{plan}/indices", params={"epoch": 1}).json()["indices"]
                )
                for _ in range(6)
            }
        assert len(pages) == 1  # whichever worker answered, the same stream
    finally:
        server.stop()


def test_workers_must_be_positive(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        cli(["serve", "--workers", "0"])
    assert "--workers should be a positive integer" in capsys.readouterr().err


def _uvicorn_run_arguments(
    monkeypatch: pytest.MonkeyPatch, argv: list[str], **env: str
) -> dict[str, object]:
    """The keywords ``sampleplan serve`` hands uvicorn.run (which is not called)."""
    import uvicorn

    from sampleplan.service.config import get_settings

    for name, value in env.items():
        monkeypatch.setenv(name, value)
    get_settings.cache_clear()
    seen: dict[str, object] = {}
    monkeypatch.setattr(uvicorn, "run", lambda app, **kwargs: seen.update(kwargs))
    try:
        cli(["serve", *argv])
    finally:
        get_settings.cache_clear()
    return seen


def test_serve_runs_the_standard_event_loop_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    # uvicorn's "auto" would take uvloop whenever it is importable.
    monkeypatch.delenv("SAMPLEPLAN_EVENT_LOOP", raising=False)
    assert _uvicorn_run_arguments(monkeypatch, [])["loop"] == "asyncio"


def test_the_loop_option_wins_over_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    env = {"SAMPLEPLAN_EVENT_LOOP": "UVLOOP"}  # any case, as the other settings
    monkeypatch.setattr("importlib.util.find_spec", lambda name: object())
    assert _uvicorn_run_arguments(monkeypatch, [], **env)["loop"] == "uvloop"
    assert _uvicorn_run_arguments(monkeypatch, ["--loop", "asyncio"], **env)["loop"] == "asyncio"


def test_uvloop_asked_for_but_not_installed_is_a_clear_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("importlib.util.find_spec", lambda name: None)
    with pytest.raises(SystemExit, match="pip install uvloop"):
        _uvicorn_run_arguments(monkeypatch, ["--loop", "uvloop"])


def test_an_unknown_event_loop_setting_stops_the_start(monkeypatch: pytest.MonkeyPatch) -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="event_loop"):
        _uvicorn_run_arguments(monkeypatch, [], SAMPLEPLAN_EVENT_LOOP="tokio")


@pytest.mark.slow  # starts processes: `make test-quick` leaves it out
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_a_served_process_does_not_load_uvloop(tmp_path: Path) -> None:
    """Whatever is installed beside it, the server runs asyncio's loop (uvloop never loaded)."""
    env = {"SAMPLEPLAN_DATABASE_URL": f"sqlite:///{tmp_path / 'l.sqlite3'}"}
    server = ServerProcess(env, tmp_path / "server.log").launch().wait_ready(timeout=240)
    try:
        assert server.process is not None
        assert httpx.get(f"{server.url}/healthz", timeout=30).status_code == 200
        maps = Path(f"/proc/{server.process.pid}/maps").read_text()
        assert "uvloop" not in maps
        assert "httptools" in maps  # the C HTTP parser is still the one used
    finally:
        server.stop()
