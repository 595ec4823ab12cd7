"""Hugging Face Accelerate's prepare() on 2 CPU processes: together, exactly one epoch.

The processes start as the guide says (``ACCELERATE_USE_CPU=true torchrun
--nproc_per_node 2``; ``accelerate launch --cpu`` starts one) and run its snippet as written.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from sampleplan.client import SamplePlanClient
from tests.helpers.datasets import PLAN_CONFIG, Items, classic_stream, imbalanced_labels
from tests.helpers.ranks import RANKS
from tests.helpers.servers import LiveServer, free_port

pytest.importorskip("accelerate")

from tests.helpers.ranks.accelerate_rank import BATCH, COUNTS, EPOCHS, WORLD_SIZE

pytestmark = pytest.mark.slow  # starts processes: `make test-quick` leaves it out

ROOT = Path(__file__).resolve().parents[2]
N = 100  # 12.5 batches of 8: the last batch is short and the processes' counts differ


def test_accelerate_processes_share_one_epoch_exactly(
    module_server: LiveServer, tmp_path: Path, private_cache: Path
) -> None:
    dataset = Items(imbalanced_labels(counts=COUNTS))
    with SamplePlanClient(module_server.url) as api:
        plan = api.create_plan(labels=dataset.targets, **{**PLAN_CONFIG, "num_samples": N})
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "GLOO_SOCKET_IFNAME": "lo",
        "SAMPLEPLAN_CACHE_DIR": str(private_cache),
        "ACCELERATE_USE_CPU": "true",
        "OMP_NUM_THREADS": "1",
    }
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        f"--nproc_per_node={WORLD_SIZE}",
        "--master_addr=127.0.0.1",
        f"--master_port={free_port()}",
        str(RANKS / "accelerate_rank.py"),
        module_server.url,
        plan.id,
        str(tmp_path),
        str(private_cache),
    ]
    done = subprocess.run(
        command, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    results = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(WORLD_SIZE)]
    expected: list[list[int]] = [[] for _ in range(WORLD_SIZE)]
    for epoch in EPOCHS:
        stream = classic_stream(dataset, epoch, num_samples=N)
        batches = [stream[k : k + BATCH] for k in range(0, N, BATCH)]
        for rank in range(WORLD_SIZE):
            # Accelerate deals batch b to process b % 2.
            expected[rank] += [i for batch in batches[rank::WORLD_SIZE] for i in batch]
    for rank, result in enumerate(results):
        assert result["num_processes"] == WORLD_SIZE
        assert result["fetched"] == expected[rank]
        assert "world_size=1, rank=0" in result["refused"]
