"""The examples in examples/ run, on small sizes, and say what the guide says they say."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # starts processes: `make test-quick` leaves it out

ROOT = Path(__file__).resolve().parents[1]


def run_example(name: str, *args: str, cache: Path) -> str:
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
        "SAMPLEPLAN_CACHE_DIR": str(cache),
    }
    # The examples must be quiet on their own, not because the suite quiets the logs.
    env.pop("SAMPLEPLAN_LOG_LEVEL", None)
    result = subprocess.run(
        [sys.executable, str(ROOT / "examples" / name), *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "sampleplan.access" not in result.stderr, "the example's service logs every request"
    return result.stdout


def test_classic_recipe_example(tmp_path: Path) -> None:
    out = run_example(
        "classic_recipe.py", "--counts", "60,20,6", "--batch-size", "8", cache=tmp_path
    )
    assert "identical to WeightedRandomSampler: True" in out
    assert "one epoch drew:" in out


def test_ddp_example(tmp_path: Path) -> None:
    out = run_example(
        "ddp.py", "--counts", "40,12,4", "--epochs", "1", "--batch-size", "8", cache=tmp_path
    )
    # 56 draws per epoch, 28 per rank.
    assert "rank 0 epoch 0: 28 samples" in out and "rank 1 epoch 0: 28 samples" in out


def test_loss_reweighting_example(tmp_path: Path) -> None:
    out = run_example("loss_reweighting.py", "--samples", "400", "--hard", "20", cache=tmp_path)
    shares = [
        float(line.split("are ")[1].split("%")[0])
        for line in out.splitlines()
        if line.startswith("epoch ") and "of the draws" in line
    ]
    assert len(shares) == 2
    # The hard samples' share of the weights rises above their share of the data (5 %).
    after = float(out.split("with ")[1].split("%")[0])
    assert after > 2 * 5.0
    assert "frozen epochs [0, 1, 2]" in out


def test_balanced_batches_example(tmp_path: Path) -> None:
    out = run_example(
        "balanced_batches.py", "--classes", "9", "--largest", "60", "--epochs", "1", cache=tmp_path
    )
    assert "every batch held 8 classes x 4 samples: True" in out
    assert "resumed after 3 batches, the epoch is the planned one: True" in out
