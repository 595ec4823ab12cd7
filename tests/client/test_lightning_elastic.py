"""A Lightning checkpoint taken mid-epoch by 2 processes, restored into 1: the same epoch."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from sampleplan.client import SamplePlanClient
from tests.helpers import reference
from tests.helpers.datasets import PLAN_CONFIG, Items, classic_stream, imbalanced_labels
from tests.helpers.ranks import RANKS
from tests.helpers.servers import LiveServer, free_port

pytestmark = pytest.mark.slow  # starts processes: `make test-quick` leaves it out

pytest.importorskip("lightning")
pytest.importorskip("torchdata")

SCRIPT = RANKS / "lightning_elastic_script.py"
ROOT = Path(__file__).resolve().parents[2]
N = 75
STEPS, BATCH = 4, 4


def test_a_lightning_checkpoint_resumes_the_epoch_in_another_world_size(
    module_server: LiveServer, tmp_path: Path, private_cache: Path
) -> None:
    dataset = Items(imbalanced_labels(counts=(60, 25, 8)))
    with SamplePlanClient(module_server.url) as api:
        plan = api.create_plan(labels=dataset.targets, **{**PLAN_CONFIG, "num_samples": N})
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "MASTER_ADDR": "127.0.0.1",
        "MASTER_PORT": str(free_port()),
        "GLOO_SOCKET_IFNAME": "lo",
        "SAMPLEPLAN_CACHE_DIR": str(private_cache),
    }
    for phase in ("save", "resume"):
        done = subprocess.run(
            [sys.executable, str(SCRIPT), module_server.url, plan.id, str(tmp_path), phase],
            env=env,
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert done.returncode == 0, done.stderr[-3000:]
    stream = classic_stream(dataset, 0, num_samples=N)
    saved = [json.loads((tmp_path / f"save-rank{r}.json").read_text()) for r in range(2)]
    for rank, seen in enumerate(saved):
        assert seen == reference.distributed_shard(stream, rank, 2)[: STEPS * BATCH]
    # The checkpoint holds rank 0's sampler state: 16 indices each, 32 over both ranks.
    (loader_state,) = json.loads((tmp_path / "loader-state.json").read_text())
    sampler_state = loader_state["_sampler_iter_state"]["sampler_state"]
    assert (sampler_state["world_size"], sampler_state["global_position"]) == (2, 32)
    # One process trains on exactly the rest of epoch 0.
    resumed = json.loads((tmp_path / "resume-rank0.json").read_text())
    assert resumed == stream[2 * STEPS * BATCH :]
