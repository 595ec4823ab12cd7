"""What an epoch number may be: the one rule every epoch (a plan's, a run's, an update's)
follows, wherever it comes in."""

from __future__ import annotations

from sampleplan.core.errors import InvalidInput, InvalidStreamRequest

__all__ = ["EPOCH_LIMIT", "check_epoch"]

#: Epochs are in ``[0, EPOCH_LIMIT)``: an epoch is stored and sent as a 32-bit number, and
#: a run freezes one row per epoch.
EPOCH_LIMIT = 2**32


def check_epoch(epoch: int, error: type[InvalidInput] = InvalidStreamRequest) -> int:
    """``epoch`` if it is in ``[0, 2**32)``; else ``error`` (the caller's kind of input)."""
    if not 0 <= epoch < EPOCH_LIMIT:
        raise error(f"epoch should be in [0, 2**32), but got epoch={epoch}")
    return epoch
