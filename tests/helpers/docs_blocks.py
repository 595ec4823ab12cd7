"""The Python blocks of README.md and of every page under docs/, read from the files.

The tests run the blocks as a reader would copy them; nothing is copied into the tests.
A block preceded by ``<!-- docs-test: NOTE -->`` says why it is not run as it stands
(:data:`NOTES`). A block's section is the ``##`` heading above it (its ``###``
subsections belong to it).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"

#: The notes a block may carry, and what each means to the tests.
NEEDS_TORCHVISION = "needs torchvision"  # run only where torchvision imports
FORMULA = "a formula, not a program"  # never run
RUN_BY_TRAINER_TESTS = "runs in tests/client/test_readme_trainers.py"  # with api, plan, ...
NOTES = frozenset({NEEDS_TORCHVISION, FORMULA, RUN_BY_TRAINER_TESTS})

_BLOCK = re.compile(
    r"(?:<!-- docs-test: (?P<note>[^>]*?) -->\n)?^```python\n(?P<code>.*?)^```", re.S | re.M
)


@dataclass(frozen=True)
class Block:
    """One ```python block: where it is, its note, its code."""

    page: str  # relative to the repository, e.g. "docs/tutorial.md"
    line: int
    section: str
    note: str | None
    code: str

    @property
    def where(self) -> str:
        return f"{self.page}:{self.line}"


def pages() -> list[Path]:
    """README.md and every Markdown page of the guide, in a fixed order."""
    return [ROOT / "README.md", *sorted(DOCS.rglob("*.md"))]


def python_blocks(page: Path) -> list[Block]:
    """Every Python block of ``page``, in order."""
    text = page.read_text(encoding="utf-8")
    blocks = []
    for match in _BLOCK.finditer(text):
        headings = re.findall(r"^## (.+)$", text[: match.start()], re.M)
        blocks.append(
            Block(
                page=page.relative_to(ROOT).as_posix(),
                line=text.count("\n", 0, match.start("code")),
                section=headings[-1] if headings else "",
                note=match.group("note"),
                code=match.group("code"),
            )
        )
    return blocks


def section(page: Path, heading: str) -> str:
    """The text under ``heading`` (a ``##`` or ``###`` line) up to the next heading as deep."""
    text = page.read_text(encoding="utf-8")
    level = heading.split(" ", 1)[0]
    start = text.index(f"\n{heading}\n") + len(heading) + 2
    ends = [m.start() for m in re.finditer(rf"\n#{{2,{len(level)}}} ", text[start:])]
    return text[start : start + ends[0]] if ends else text[start:]


def blocks_under(page: Path, heading: str) -> list[str]:
    """The code of the Python blocks under ``heading`` of ``page``, in order."""
    return re.findall(r"^```python\n(.*?)^```", section(page, heading), flags=re.S | re.M)
