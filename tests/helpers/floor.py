"""Which requests the floor (NOTE [Serving at the floor] in service/api/floor.py) answered."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from sampleplan.service.api import floor as floor_module


def answered_at_floor(
    monkeypatch: pytest.MonkeyPatch, what: Callable[[Any], Any] = lambda scope: scope["path"]
) -> list[Any]:
    """``what`` of each request the floor answers from now on (its path by default), in
    order; requests it leaves to the stack are not in the list."""
    found: list[Any] = []
    original = floor_module.Floor.answer

    def spy(self: Any, scope: Any) -> Any:
        answer = original(self, scope)
        if answer is not None:
            found.append(what(scope))
        return answer

    monkeypatch.setattr(floor_module.Floor, "answer", spy)
    return found
