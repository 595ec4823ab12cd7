"""The floor's page writers against the stack's responses (NOTE [A page at the floor in one
step] in service/api/streams.py): the raw headers and the body of a page written at the
floor are those of the response the route builds, byte for byte, whatever its ids hold.

The HTTP tests of the floor compare whole answers for the ids the service makes (plan ids,
run ids of plain characters); these cover ids a JSON writer escapes too, whose head the
floor leaves to the JSON writer.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest
from starlette.responses import Response

from sampleplan.core.streams import StreamRequest
from sampleplan.service.api.arrays import JSON, NPY, OCTET_STREAM, json_number_bytes
from sampleplan.service.api.streams import (
    PLAN_OPENINGS,
    RUN_OPENINGS,
    PageOpenings,
    batch_page_at_floor,
    batch_page_response,
    stream_page_at_floor,
    stream_page_response,
)

MEDIA_TYPES = (JSON, OCTET_STREAM, NPY)
#: Ids of plain characters, and ids JSON escapes or writes as more than ASCII.
RUN_IDS = (
    ("floor-run.1", "a1b2c3"),
    ('quo"te', "a1b2c3"),
    ("back\\slash", "a1b2c3"),
    ("tab\there", "a1b2c3"),
    ("naïve", "a1b2c3"),
    ("run", "plan/with space"),
)


def _raw(response: Response) -> tuple[list[tuple[bytes, bytes]], bytes]:
    return list(response.raw_headers), bytes(response.body)


@pytest.mark.parametrize("media_type", MEDIA_TYPES)
@pytest.mark.parametrize(
    ("openings", "ids"),
    [(RUN_OPENINGS, ids) for ids in RUN_IDS]
    + [(PLAN_OPENINGS, ("a1b2c3",)), (PLAN_OPENINGS, ('quo"te',))],
)
@pytest.mark.parametrize("head_only", [False, True])
@pytest.mark.parametrize("written", [False, True], ids=["from values", "numbers written"])
def test_a_stream_page_at_the_floor_is_the_routes_response(
    media_type: str, openings: PageOpenings, ids: tuple[str, ...], head_only: bool, written: bool
) -> None:
    """A plan's or a run's page, its numbers written from the page or taken from the
    epoch's text (NOTE [Numbers written once]: JSON text, or a binary page's bytes)."""
    stream = np.arange(100, 140, dtype=np.int64)[::-1].copy()
    fields: dict[str, Any] = {
        "epoch": 3,
        "rank": 0,
        "world_size": 1,
        "offset": 7,
        "limit": 11,
        "space": "dataset",
        "start": 2,
        "pad": False,
        "drop_last": True,
    }
    request = StreamRequest(**fields)
    bounds = request.bounds(stream.size)
    page = stream[fields["start"] + bounds.first : fields["start"] + bounds.stop]
    expected = stream_page_response(
        media_type, page, request, stream.size, head_only, ids=openings.ids(ids)
    )
    numbers = None
    if written:
        text = json_number_bytes(page) if media_type == JSON else page.astype("<i8").tobytes()
        numbers = memoryview(text)
    found = stream_page_at_floor(
        media_type,
        None if written else page,
        numbers,
        page.size,
        fields,
        bounds.length,
        head_only,
        openings,
        ids,
    )
    headers, body = _raw(expected)
    assert found[0] == headers
    if media_type == JSON or not head_only:
        assert found[1] == body
    else:
        assert found[1] == b""  # no body to a HEAD of a binary page, as the route's


@pytest.mark.parametrize("media_type", MEDIA_TYPES)
@pytest.mark.parametrize("plan_id", ["a1b2c3", 'quo"te', "naïve"])
def test_a_batch_page_at_the_floor_is_the_routes_response(media_type: str, plan_id: str) -> None:
    batches = np.arange(24, dtype=np.int64).reshape(6, 4)
    fields: dict[str, Any] = {
        "epoch": 1,
        "rank": 1,
        "world_size": 2,
        "offset": 1,
        "limit": 2,
        "space": "population",
    }
    request = StreamRequest(**fields)
    page = batches[2:4]
    expected = batch_page_response(media_type, page, request, 3, 4, False, ids={"plan_id": plan_id})
    length = request.length(3)  # the rank's batches, of the epoch's 3
    found = batch_page_at_floor(media_type, page, None, 2, 4, fields, length, False, plan_id)
    assert found == _raw(expected)


def test_openings_are_what_json_writes_and_empty_where_it_escapes() -> None:
    openings = PageOpenings("run_id", "plan_id")
    opening = openings.of(("r-1.x_y", "abc"))
    assert json.loads(opening + b'"k":0}') == {"run_id": "r-1.x_y", "plan_id": "abc", "k": 0}
    assert openings.of(('r"1', "abc")) == b""
    assert openings.of(("r\u00e9", "abc")) == b""
    assert openings.ids(("r", "p")) == {"run_id": "r", "plan_id": "p"}
    assert PLAN_OPENINGS.names == ("plan_id",)


def test_openings_are_bounded() -> None:
    openings = PageOpenings("plan_id")
    for number in range(PageOpenings.MAX_SIZE + 10):
        assert openings.of((f"p{number}",)) == b'{"plan_id":"p%d",' % number
    assert len(openings._found) <= PageOpenings.MAX_SIZE
