"""A sampler's loaded state: checked once, applied at the next ``iter()``.

The rules are NOTE [Resumption] in ``_sampler.py``: with the world size it was saved in
and unedited, each rank goes on with its own deal at ``position``; otherwise the rest of
the epoch, from ``global_position`` on, is dealt again over the ranks there are.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sampleplan.client._arguments import check_int
from sampleplan.core.dealing import dealt_length, global_position

__all__ = ["STATE_KEYS", "Resume", "check_state_dict"]

#: What every state dict of both samplers holds (a weighted sampler's ``start`` and
#: ``global_position`` came later: optional).
STATE_KEYS = ("plan_id", "epoch", "position", "world_size")


def check_state_dict(state_dict: Mapping[str, Any], plan_id: str) -> None:
    """Refuse a state dict without :data:`STATE_KEYS` or for another plan."""
    missing = [key for key in STATE_KEYS if key not in state_dict]
    if missing:
        raise ValueError(f"state_dict lacks {', '.join(missing)}; expected {', '.join(STATE_KEYS)}")
    if state_dict["plan_id"] != plan_id:
        raise ValueError(
            f"state_dict is for plan {state_dict['plan_id']!r}, this sampler draws plan {plan_id!r}"
        )


@dataclass(frozen=True)
class Resume:
    """A loaded state, applied at the next ``iter()``; see NOTE [Resumption]."""

    world_size: int
    start: int
    position: int
    global_position: int

    @classmethod
    def from_state_dict(cls, state_dict: Mapping[str, Any], num_samples: int) -> Resume:
        """The state of an epoch of ``num_samples`` draws, checked in torch's words."""
        position = check_int("position", state_dict["position"], minimum=0, what="non-negative")
        world_size = check_int("world_size", state_dict["world_size"], minimum=1, what="positive")
        start = check_int("start", state_dict.get("start", 0), minimum=0, what="non-negative")
        if start > num_samples:
            raise ValueError(
                f"start should be at most the epoch's {num_samples} draws, but got start={start}"
            )
        most = dealt_length(num_samples, start, world_size, 0, pad=True, drop_last=False)
        if position > most:
            raise ValueError(
                f"position should be at most ceil((num_samples - start) / world_size)={most}, "
                f"but got position={position}"
            )
        reached = global_position(num_samples, start, world_size, position)
        if "global_position" in state_dict:
            given = state_dict["global_position"]
            check_int("global_position", given, minimum=0, what="non-negative")
            if given > num_samples:
                raise ValueError(
                    f"global_position should be at most the epoch's {num_samples} draws, "
                    f"but got global_position={given}"
                )
            # Lowered to the minimum over ranks, it wins; it never moves past ``position``.
            reached = min(reached, given)
        return cls(world_size, start, position, reached)

    def point(
        self, num_samples: int, rank: int, world_size: int, *, pad: bool, drop_last: bool
    ) -> tuple[int, int]:
        """``(start, position)`` of the iteration that applies it; see NOTE [Resumption]."""
        unedited = self.global_position == global_position(
            num_samples, self.start, self.world_size, self.position
        )
        if (
            self.world_size == world_size
            and unedited
            and self.position
            <= dealt_length(num_samples, self.start, world_size, rank, pad=pad, drop_last=drop_last)
        ):
            return self.start, self.position
        return self.global_position, 0
