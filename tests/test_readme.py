"""The Python code of README.md and of the guide (docs/) runs, and what the code cites exists.

Each page's blocks (:mod:`tests.helpers.docs_blocks`) run in order, in one namespace (later ones
may use what earlier ones made, as a reader would in one session), in a folder holding
what they name (``data/train`` as an ImageFolder tree, ``train.csv``, ``files.txt``),
against a live service in place of ``http://127.0.0.1:8000``. A block's
``<!-- docs-test: ... -->`` note keeps it from running here: ``needs torchvision`` runs
only where torchvision imports (it cannot be installed next to the pinned torch), ``a
formula, not a program`` never, and the trainers' and elastic snippets run in
``tests/client/test_readme_trainers.py`` (some need several processes).
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
from tests.helpers.docs_blocks import (
    DOCS,
    NEEDS_TORCHVISION,
    NOTES,
    ROOT,
    RUN_BY_TRAINER_TESTS,
    Block,
    pages,
    python_blocks,
)
from tests.helpers.servers import LiveServer

SERVICE_URL = "http://127.0.0.1:8000"
TUTORIAL = DOCS / "tutorial.md"


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


def _runs_here(block: Block) -> bool:
    if block.note == NEEDS_TORCHVISION:
        return _torchvision_imports()
    return block.note is None


PAGES_WITH_CODE = [page for page in pages() if any(map(_runs_here, python_blocks(page)))]


def test_the_pages_have_the_blocks_this_test_expects() -> None:
    every = [block for page in pages() for block in python_blocks(page)]
    assert {block.note for block in every if block.note} <= NOTES
    run = [block for block in every if block.note is None]
    assert len(run) >= 8 and {block.page for block in run} >= {"README.md", "docs/tutorial.md"}
    assert any("image_folder_targets" in block.code for block in run)
    # The headline recipe runs without torchvision; only the marked block imports it.
    assert not any(re.search(r"^\s*(from|import) torchvision", b.code, re.M) for b in run)
    # Every block the trainer tests run is marked so, and nothing else.
    elsewhere = {block.page for block in every if block.note == RUN_BY_TRAINER_TESTS}
    assert elsewhere == {
        "docs/how-to/trainers.md",
        "docs/how-to/elastic.md",
        "docs/how-to/hugging-face.md",
    }
    # A fence the tests would not see (```py, ```python3, an indented fence) is a mistake.
    for page in pages():
        text = page.read_text(encoding="utf-8")
        assert not re.search(r"^\s*```(py|python3|pycon)\s*$", text, re.M), page
        assert not re.search(r"^[ \t]+```python", text, re.M), page


def test_the_readme_is_the_front_page() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert len(readme.splitlines()) <= 300
    for command in ("make serve", "make test", "make docs"):
        assert re.search(rf"^{command}\b", readme, re.M), command


@pytest.mark.parametrize(
    "page", PAGES_WITH_CODE, ids=lambda page: page.relative_to(ROOT).as_posix()
)
def test_every_python_block_runs(
    page: Path, module_server: LiveServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    make_image_folder(tmp_path / "data" / "train")
    (tmp_path / "train.csv").write_text("path,y\na.png,cat\nb.png,dog\nc.png,cat\n")
    (tmp_path / "files.txt").write_text("cat/0001.png\ncat/0002.png\ndog/0001.png\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("SAMPLEPLAN_CACHE_DIR", str(tmp_path / "plan-cache"))
    # The snippets open clients as a reader would, without closing them: close them here.
    opened: list[client.SamplePlanClient] = []

    class TrackedClient(client.SamplePlanClient):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            opened.append(self)

    monkeypatch.setattr(client, "SamplePlanClient", TrackedClient)
    namespace: dict[str, Any] = {"__name__": "docs"}
    ran = 0
    try:
        for block in python_blocks(page):
            if not _runs_here(block):
                continue
            source = block.code.replace(SERVICE_URL, module_server.url)
            exec(compile(source, block.where, "exec"), namespace)
            ran += 1
            if page == TUTORIAL and "api.indices" in block.code:
                _check_the_headline_claim(namespace)
            if "RemoteBatchSampler(" in source:
                _paths, targets = next(iter(namespace["loader"]))
                assert len(targets) == 32 and len(set(targets.tolist())) == 8  # 8 classes x 4
    finally:
        namespace.clear()
        for api in opened:
            api.close()
    assert ran >= 1


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


# -- what the code and the guide cite -------------------------------------------------------

_NOTE = re.compile(r"NOTE\s+\[([^\]]+)\]")
#: A note's definition: ``NOTE [name]`` opening a line (of a docstring or a comment).
_NOTE_DEFINED = re.compile(r"^[ \t]*(?:#[ \t]*)?NOTE \[([^\]]+)\][^\S\n]*(?:\(|$)", re.M)


def _sources() -> list[Path]:
    folders = ("sampleplan", "service", "client", "tests", "benchmarks", "examples")
    # sampleplan/service and sampleplan/client are links to the real folders.
    links = ("sampleplan/service/", "sampleplan/client/")
    return [
        path
        for folder in folders
        for path in sorted((ROOT / folder).rglob("*.py"))
        if not path.relative_to(ROOT).as_posix().startswith(links)
    ]


def _cited(text: str) -> set[str]:
    # A name may be wrapped over the lines of a comment, whose "#" is then not part of it.
    names = {" ".join(re.sub(r"\n\s*#?", " ", name).split()) for name in _NOTE.findall(text)}
    return names - {"..."}  # prose about notes in general


def test_every_note_cited_is_defined_and_indexed_in_the_design_page() -> None:
    defined: dict[str, set[str]] = {}
    cited: set[str] = set()
    for path in _sources():
        if path == Path(__file__):
            continue  # this file spells the pattern out
        text = path.read_text(encoding="utf-8")
        for name in _NOTE_DEFINED.findall(text):
            defined.setdefault(name, set()).add(path.relative_to(ROOT).as_posix())
        cited |= _cited(text)
    for page in pages():
        cited |= _cited(page.read_text(encoding="utf-8"))
    assert cited - set(defined) == set(), "cited but defined nowhere"
    design = (DOCS / "design.md").read_text(encoding="utf-8").split("\n## Notes in the code\n")[1]
    index = dict(re.findall(r"^\| ([^|]+?) \| `([^`]+)` \|$", design, re.M))
    assert set(index) == set(defined), "docs/design.md's index of notes is not the code's"
    for name, path in index.items():
        assert path in defined[name], f"NOTE [{name}] is not in {path}"


#: A file of the repository named in code or prose, as `service/api/limits.py`.
_FILE = re.compile(
    r"`((?:sampleplan|service|client|tests|benchmarks|examples|docker|docs)/[\w./-]+\.\w+)`"
)


def test_nothing_cites_a_file_the_repository_does_not_have() -> None:
    texts = [path.read_text(encoding="utf-8") for path in _sources()]
    texts += [page.read_text(encoding="utf-8") for page in pages()]
    texts.append((ROOT / "constraints.txt").read_text(encoding="utf-8"))
    assert not any(re.search(r"\bDESIGN\.md\b|README[']s", text) for text in texts)
    for text in texts:
        for cited in _FILE.findall(text):
            assert (ROOT / cited).exists(), cited
