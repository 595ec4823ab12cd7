"""``RunUpdates``: how a sampler's ``update_weights`` calls become update requests."""

from __future__ import annotations

import pickle
import threading
from typing import Any

import numpy as np
import pytest

from sampleplan.client._run_updates import RunUpdates


class RecordingApi:
    """Stands in for the client: records each update it is asked to send."""

    def __init__(self, fail: bool = False) -> None:
        self.sent: list[dict[str, Any]] = []
        self.fail = fail
        self.threads: set[str] = set()

    def update_weights(self, run_id: str, indices: Any, values: Any, **tags: Any) -> None:
        self.threads.add(threading.current_thread().name)
        if self.fail:
            raise RuntimeError("epoch 1 of run r has been served already")
        self.sent.append(
            {"run": run_id, "indices": indices.tolist(), "values": values.tolist(), **tags}
        )


def updates(api: RecordingApi, batch_size: int = 5) -> RunUpdates:
    return RunUpdates(api, "r", batch_size=batch_size)  # type: ignore[arg-type]


def test_calls_are_batched_by_count_under_the_step_of_the_first() -> None:
    api = RecordingApi()
    run = updates(api)
    run.add([0, 1], [1.0, 2.0], op="set", alpha=None, epoch=0, rank=1)
    run.add(np.array([2, 3]), np.array([3.0, 4.0]), op="set", alpha=None, epoch=0, rank=1)
    assert api.sent == []  # 4 values: not yet a batch
    run.add([4], [5.0], op="set", alpha=None, epoch=0, rank=1)
    run.add([5], [0.5], op="ema", alpha=0.1, epoch=0, rank=1)  # another op: a request of its own
    run.flush()
    assert [(u["indices"], u["step"], u["op"], u["alpha"]) for u in api.sent] == [
        ([0, 1, 2, 3, 4], 0, "set", None),
        ([5], 3, "ema", 0.1),
    ]
    assert {(u["epoch"], u["rank"]) for u in api.sent} == {(0, 1)}
    assert api.threads == {"sampleplan-updates"}
    assert run.step == 4
    run.next_epoch()
    assert run.step == 0


def test_an_update_is_tagged_with_the_epoch_it_was_made_in() -> None:
    api = RecordingApi()
    run = updates(api)
    run.add([0], [2.0], op="mul", alpha=None, epoch=3, rank=0)
    run.add([1], [2.0], op="mul", alpha=None, epoch=4, rank=0)
    run.flush()
    assert [(u["epoch"], u["indices"]) for u in api.sent] == [(3, [0]), (4, [1])]


def test_bad_updates_are_refused_in_torch_words() -> None:
    run = updates(RecordingApi())
    with pytest.raises(ValueError, match="op should be 'set', 'mul' or 'ema', but got op='add'"):
        run.add([0], [1.0], op="add", alpha=None, epoch=0, rank=0)
    with pytest.raises(ValueError, match=r"op 'ema' needs alpha in \(0, 1\], but got alpha=0.0"):
        run.add([0], [1.0], op="ema", alpha=0.0, epoch=0, rank=0)
    with pytest.raises(ValueError, match="alpha only applies to op 'ema', not to op 'set'"):
        run.add([0], [1.0], op="set", alpha=0.5, epoch=0, rank=0)
    with pytest.raises(ValueError, match="same length, but got 2 and 1"):
        run.add([0, 1], [1.0], op="set", alpha=None, epoch=0, rank=0)
    assert run.step == 0


def test_the_first_error_is_raised_at_the_flush_once() -> None:
    run = updates(RecordingApi(fail=True), batch_size=1)
    run.add([0], [1.0], op="set", alpha=None, epoch=0, rank=0)
    run.add([1], [1.0], op="set", alpha=None, epoch=0, rank=0)
    with pytest.raises(RuntimeError, match="served already"):
        run.flush()
    run.flush()  # raised once; the second request was not sent after the first failed


def test_pickling_sends_the_buffer_first_and_the_copy_sends_on_its_own_thread() -> None:
    api = RecordingApi()
    run = updates(api)
    run.add([0], [2.0], op="mul", alpha=None, epoch=0, rank=0)
    copy = pickle.loads(pickle.dumps(run))
    assert len(api.sent) == 1  # sent by the original, before it was copied
    assert copy.step == 1 and copy._sender is not run._sender
    copy.flush()
    run.flush()
    copy.add([1], [2.0], op="mul", alpha=None, epoch=0, rank=0)
    copy.flush()
    # The copy's client is a copy of the original's (its record too): [0] was sent once,
    # by the original, and [1] by the copy only.
    assert [u["indices"] for u in copy.api.sent] == [[0], [1]]
    assert [u["indices"] for u in api.sent] == [[0]]
