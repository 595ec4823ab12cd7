"""The README's Python code runs: every ```python block, taken from README.md itself.

The blocks run in order, in one namespace (later ones may use what earlier ones made, as
a reader would in one session), in a folder holding what they name (``data/train`` as an
ImageFolder tree, ``train.csv``, ``files.txt``), against a live service in place of
``http://127.0.0.1:8000``. A block preceded by ``<!-- readme-test: ... -->`` says why it
is not run as is: ``needs torchvision`` runs only where torchvision imports (it cannot be
installed next to the pinned torch), ``a formula, not a program`` never. The section
"Training frameworks" and "Elastic training and evaluation" are left to their own tests
(``tests/client/test_readme_trainers.py``: they need several processes).
"""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import torch
from torch.utils.data import WeightedRandomSampler

import sampleplan.client as client
from tests.conftest import LiveServer

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
README_URL = "http://127.0.0.1:8000"
#: Sections whose snippets other tests run.
SECTIONS_RUN_ELSEWHERE = ("Training frameworks", "Elastic training and evaluation")

_BLOCK = re.compile(
    r"(?:<!-- readme-test: (?P<note>[^>]*?) -->\n)?```python\n(?P<code>.*?)```", re.S
)


def python_blocks() -> list[tuple[str, str | None, str]]:
    """``(section, note, code)`` for every Python block, in README order.

    ``section`` is the block's ``##`` heading (its ``###`` subsections belong to it).
    """
    text = README.read_text(encoding="utf-8")
    blocks = []
    for match in _BLOCK.finditer(text):
        headings = re.findall(r"^## (.+)$", text[: match.start()], re.M)
        section = headings[-1] if headings else ""
        blocks.append((section, match.group("note"), match.group("code")))
    return blocks


def make_image_folder(root: Path) -> None:
    """An imbalanced ImageFolder tree (empty files: nothing is loaded), with distractors."""
    # Eight classes: the batch plan example takes 32 // 4 of them per batch.
    counts = {"cat": 40, "dog": 12, "fox": 5, "owl": 9, "elk": 6, "bee": 30, "ant": 7, "yak": 4}
    for name, count in counts.items():
        (root / name).mkdir(parents=True)
        for n in range(count):
            (root / name / f"{n:03d}.jpg").write_bytes(b"")
        (root / name / "notes.txt").write_bytes(b"")  # not an image: ImageFolder skips it


def _torchvision_imports() -> bool:
    try:
        import torchvision.datasets  # noqa: F401
    except Exception:  # not installed, or built against another torch
        return False
    return True


def test_the_readme_has_the_blocks_this_test_expects() -> None:
    blocks = python_blocks()
    notes = {note for _, note, _ in blocks if note}
    assert notes <= {"needs torchvision", "a formula, not a program"}
    run = [code for section, note, code in blocks if note is None]
    assert len(run) >= 3
    assert any("image_folder_targets" in code for code in run)
    # The headline recipe runs without torchvision; only the marked block imports it.
    assert not any(re.search(r"^\s*(from|import) torchvision", code, re.M) for code in run)


def test_every_python_block_runs(
    module_server: LiveServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    make_image_folder(tmp_path / "data" / "train")
    (tmp_path / "train.csv").write_text("path,y\na.png,cat\nb.png,dog\nc.png,cat\n")
    (tmp_path / "files.txt").write_text("cat/0001.png\ncat/0002.png\ndog/0001.png\n")
    monkeypatch.chdir(tmp_path)
    # The snippets open clients as a reader would, without closing them: close them here.
    opened: list[client.SamplePlanClient] = []

    class TrackedClient(client.SamplePlanClient):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            opened.append(self)

    monkeypatch.setattr(client, "SamplePlanClient", TrackedClient)
    namespace: dict[str, Any] = {"__name__": "readme"}
    ran = 0
    try:
        for section, note, code in python_blocks():
            if section in SECTIONS_RUN_ELSEWHERE or note == "a formula, not a program":
                continue
            if note == "needs torchvision" and not _torchvision_imports():
                continue
            source = code.replace(README_URL, module_server.url)
            exec(compile(source, f"README.md ({section})", "exec"), namespace)
            ran += 1
            if section == "The classic recipe, on the service" and "api.indices" in code:
                _check_the_headline_claim(namespace)
            if "RemoteBatchSampler(" in source:
                _paths, targets = next(iter(namespace["loader"]))
                assert len(targets) == 32 and len(set(targets.tolist())) == 8  # 8 classes x 4
    finally:
        namespace.clear()
        for api in opened:
            api.close()
    assert ran >= 3 and opened


def _check_the_headline_claim(namespace: dict[str, Any]) -> None:
    """``api.indices(plan.id, epoch=e)`` is the hand-written recipe's stream, bit for bit."""
    train = namespace["train"]
    folder = namespace["folder"]
    targets = [folder.targets[i] for i in train.indices]
    counts = Counter(targets)
    weights = torch.tensor([1.0 / counts[t] for t in targets], dtype=torch.float64)
    epoch = 2
    expected = list(
        WeightedRandomSampler(
            weights, len(targets), generator=torch.Generator().manual_seed(0 + epoch)
        )
    )
    assert namespace["indices"].tolist() == expected
    batch = next(iter(namespace["loader"]))
    assert len(batch) == 2  # (paths, targets), as an ImageFolder batch is (images, targets)
