"""``sampleplan serve --workers N``: N processes answer on one port."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import httpx
import pytest

from service.main import cli
from tests.server_process import ServerProcess


def _children(pid: int) -> list[int]:
    """Worker processes of the uvicorn supervisor ``pid`` (spawned; not its resource tracker)."""
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        for child in (task / "children").read_text().split():
            cmdline = Path(f"/proc/{child}/cmdline").read_bytes()
            if b"spawn_main" in cmdline:
                found.append(int(child))
    return found


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
