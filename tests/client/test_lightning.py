"""Real PyTorch Lightning with its defaults: every rank trains on exactly its shard of the plan."""

from __future__ import annotations

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

from tests.helpers.ranks.lightning_script import COUNTS, EPOCHS  # noqa: E402

SCRIPT = RANKS / "lightning_script.py"
ROOT = Path(__file__).resolve().parents[2]
N = 75  # odd: rank 1's shard ends with the padded first draw


@pytest.mark.parametrize("strategy", ["ddp", "ddp_spawn"])
def test_lightning_ranks_train_on_the_plans_shards(
    module_server: LiveServer, tmp_path: Path, private_cache: Path, strategy: str
) -> None:
    dataset = Items(imbalanced_labels(counts=COUNTS))
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
    done = subprocess.run(
        [sys.executable, str(SCRIPT), module_server.url, plan.id, str(tmp_path), strategy],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    shard = -(-N // 2)  # each rank's batches of an epoch, in order
    for rank in range(2):
        fetched = [int(line) for line in (tmp_path / f"rank{rank}.txt").read_text().split()]
        assert len(fetched) == EPOCHS * shard
        for epoch in range(EPOCHS):
            stream = classic_stream(dataset, epoch, num_samples=N)
            seen = fetched[epoch * shard : (epoch + 1) * shard]
            assert seen == reference.distributed_shard(stream, rank, 2), (epoch, rank)
