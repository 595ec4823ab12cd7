"""The README's code blocks, read from the README itself (never copied into the tests)."""

from __future__ import annotations

import re
from pathlib import Path

README = Path(__file__).resolve().parents[2] / "README.md"


def section(heading: str) -> str:
    """The text under ``heading`` (a ``##`` or ``###`` line) up to the next heading as deep."""
    text = README.read_text()
    level = heading.split(" ", 1)[0]
    start = text.index(f"\n{heading}\n") + len(heading) + 2
    ends = [m.start() for m in re.finditer(rf"\n#{{2,{len(level)}}} ", text[start:])]
    return text[start : start + ends[0]] if ends else text[start:]


def python_blocks(heading: str) -> list[str]:
    """The ```python blocks under ``heading``, in order."""
    return re.findall(r"```python\n(.*?)```", section(heading), flags=re.DOTALL)
