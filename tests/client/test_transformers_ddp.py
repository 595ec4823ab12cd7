"""SamplePlanTrainer in 2 processes (torchrun, gloo, CPU): each rank trains on its shard.

Each rank's batches are its ``DistributedSampler`` shard of the plan's stream (torch's
``WeightedRandomSampler`` on the weights written out), not Accelerate's round-robin of
batches; each rank sends its own samples' losses, and epoch 1 draws from the weights the
``ema`` formula gives them, applied rank 0 first (NOTE [Run updates]: step, then rank).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from sampleplan.client import SamplePlanClient
from tests.helpers import reference
from tests.helpers.ranks import RANKS
from tests.helpers.servers import LiveServer, free_port

pytestmark = pytest.mark.slow  # starts processes: `make test-quick` leaves it out

pytest.importorskip("transformers")

from tests.helpers.hf import labels_64  # noqa: E402  (sets HF_HUB_OFFLINE first)

ROOT = Path(__file__).resolve().parents[2]
SEED = 7
N = 64  # 32 a rank: 4 batches of 8 each epoch


def test_two_ranks_train_on_their_shards_and_send_their_losses(
    module_server: LiveServer, tmp_path: Path, private_cache: Path
) -> None:
    labels = labels_64()
    with SamplePlanClient(module_server.url) as api:
        plan = api.create_plan(labels=labels, strategy="inverse_frequency", seed=SEED)
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "GLOO_SOCKET_IFNAME": "lo",
        "SAMPLEPLAN_CACHE_DIR": str(private_cache),
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "OMP_NUM_THREADS": "1",
    }
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node=2",
        "--master_addr=127.0.0.1",
        f"--master_port={free_port()}",
        str(RANKS / "hf_trainer_script.py"),
        module_server.url,
        plan.id,
        str(tmp_path),
    ]
    done = subprocess.run(
        command, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]
    assert [r["world_size"] for r in ranks] == [2, 2]

    weights = np.array(reference.inverse_frequency(labels), dtype=np.float64)
    epoch0 = reference.weighted_stream(list(weights), N, True, SEED)
    # ema over epoch 0's losses: rank 0's updates, then rank 1's.
    for r in range(2):
        (flush0, _flush1) = ranks[r]["sent"]
        assert [i for i, _ in flush0] == reference.distributed_shard(epoch0, r, 2)
        for i, loss in flush0:
            weights[i] = (1 - 0.1) * weights[i] + 0.1 * loss
    epoch1 = reference.weighted_stream(list(weights), N, True, SEED + 1)
    for r in range(2):
        fed = ranks[r]["fed"]
        # Accelerate's loader reads one batch ahead only within an epoch: 32 per epoch.
        assert fed[:32] == reference.distributed_shard(epoch0, r, 2)
        assert fed[32:] == reference.distributed_shard(epoch1, r, 2)


def test_the_guides_torchrun_script_runs_as_written(
    module_server: LiveServer, tmp_path: Path, private_cache: Path
) -> None:
    """docs/how-to/hugging-face.md's train.py, started as it says, 2 processes."""
    from tests.helpers.docs_blocks import DOCS, blocks_under

    (script,) = blocks_under(DOCS / "how-to" / "hugging-face.md", "## Two processes with torchrun")
    assert "torchrun --nproc_per_node 2 train.py" in script
    (tmp_path / "train.py").write_text(script.replace("http://127.0.0.1:8000", module_server.url))
    env = {
        **os.environ,
        "GLOO_SOCKET_IFNAME": "lo",
        "SAMPLEPLAN_CACHE_DIR": str(private_cache),
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "HF_DATASETS_OFFLINE": "1",
        "HF_HOME": str(tmp_path / "hf-home"),
    }
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node=2",
        "--master_addr=127.0.0.1",
        f"--master_port={free_port()}",
        "train.py",
    ]
    done = subprocess.run(
        command, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    with SamplePlanClient(module_server.url) as api:
        run = api.get_run("bert-ddp-1")
        plan = api.get_plan(run.plan_id)
        assert plan.population_size == 96
        # Both processes sent their 48 losses of epoch 0: epoch 1 draws from other weights.
        before = api.weights(run.plan_id)
        after = api.run_weights("bert-ddp-1", 1)
    assert run.updates >= 2
    assert not np.allclose(before, after)
