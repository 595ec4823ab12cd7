"""``make load`` end to end, short: the scenarios run, and answer correct data under load.

Timing is not asserted (CI machines vary); correctness is: every page answered under wrk's
load equals the same page fetched alone, the fan-out's 64 shards equal the epoch's
``stream[rank::64]``, and the cold epoch was drawn once.
"""

from __future__ import annotations

import importlib
import shutil
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import httpx
import pytest

pytestmark = pytest.mark.slow  # starts processes: `make test-quick` leaves it out


@pytest.fixture(scope="module")
def load() -> ModuleType:
    missing = [tool for tool in ("wrk", "curl") if shutil.which(tool) is None]
    if missing:
        pytest.skip(f"LOAD SCENARIOS NOT TESTED: {', '.join(missing)} missing (make test installs)")
    # Imported by its module name: the fan-out's prober runs in a spawned process, which
    # must import it again.
    return importlib.import_module("benchmarks.load")


@pytest.fixture(scope="module")
def server(load: ModuleType, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """One ``sampleplan serve`` for the tests below (a process start is seconds of imports):
    the pages they fetch and the runs they write are their own."""
    with load.server_process(tmp_path_factory.mktemp("server")) as (url, _pid):
        yield url


def test_the_page_floor_and_fan_out_scenarios_answer_correct_data_under_load(
    load: ModuleType,
) -> None:
    rows = load.run(
        duration=1.0,
        check_seconds=1.0,
        fanout_draws=300_000,
        scenarios=("pages", "floor", "fan-out"),
        passes=1,  # one 1 s wrk run per kind and side, not more: the checks are the same
        floor_passes=1,
        floor_kinds=("page",),  # the others' pages: test_every_kind_of_floor_page_is_warm
    )
    by_name = {row.scenario: row for row in rows}
    floor = {f"floor {who}-{kind}" for who in ("bare", "page") for kind in ("json", "octet")}
    assert set(by_name) == {"page-json", "page-octet", "healthz", "fan-out"} | floor
    for name in ("page-json", "page-octet"):
        row = by_name[name]
        assert row.ok, row.note
        assert row.extra["requests"] > 0 and row.extra["failed"] == 0
        assert " 0 differ" in row.note and "pages checked" in row.note
    assert by_name["healthz"].ok and by_name["healthz"].per_second > 0
    fan_out = by_name["fan-out"]
    assert fan_out.extra["exact"] and fan_out.extra["draws"] == 1, fan_out.note
    # The floor: pages at random offsets against a bare ASGI app, no request failed.
    for kind in ("json", "octet"):
        bare, page = by_name[f"floor bare-{kind}"], by_name[f"floor page-{kind}"]
        for row in (bare, page):
            assert row.ok, row.note
            assert row.extra["requests"] > 0 and row.extra["failed"] == 0
        assert page.extra["of_bare"] == pytest.approx(page.per_second / bare.per_second)
        assert "x of bare" in page.note and ">= 0.5x bare" in page.target
        # The CPU each server used a request (Linux's /proc), and their ratio.
        assert bare.extra["cpu_us"] > 0 and page.extra["cpu_us"] > 0
        by_cpu = bare.extra["cpu_us"] / page.extra["cpu_us"]
        assert page.extra["of_bare_by_cpu"] == pytest.approx(by_cpu)
        assert "us CPU a request" in bare.note and "x by CPU" in page.note
    table = load.render(rows)
    for words in ["req/s", "p50 ms", "p99 ms", "ratio", "page-json", "fan-out", "floor page"]:
        assert words in table


def test_every_kind_of_floor_page_is_warm(load: ModuleType, server: str) -> None:
    """What the floor scenario measures: for every kind, pages of a cached epoch, the last
    offset a whole page, as big as an index page."""
    found = load.warm_floor_pages(server)
    assert [pages.kind for pages in found] == list(load.FLOOR_KINDS)
    with httpx.Client(base_url=server, timeout=60) as client:
        for pages in found:
            for offset in (0, pages.last):
                page = client.get(pages.prefix + str(offset)).json()
                values = page.get("indices", page.get("batches"))
                assert page["offset"] == offset and len(values) in (1000, load.BATCH_SIZE)
            beyond = client.get(pages.prefix + str(pages.last + 1)).json()
            assert len(beyond.get("indices", beyond.get("batches"))) < len(values)


def test_wrk_reports_pages_that_differ(load: ModuleType, server: str, tmp_path: Path) -> None:
    """The check itself works: wrong expectations are counted, not passed over."""
    plan_id = load.warm_page_plan(server)
    paths = load.page_paths(plan_id, count=4)
    wrong = {offset: b"not the page" for offset in paths}
    result = load.run_wrk(
        server, list(paths.values()), tmp_path, connections=4, duration=1, expected=wrong
    )
    assert result.requests > 0 and result.mismatches == result.requests


def test_the_write_scenario_counts_acknowledged_updates_and_finds_them_stored(
    load: ModuleType, server: str, tmp_path: Path
) -> None:
    # 2 s: on a busy machine the first updates of 8 fresh runs can take a second.
    row = load.write_load(server, tmp_path, scenario="writes-sqlite", duration=2.0)
    assert row.ok, row.note
    acknowledged, stored = row.extra["acknowledged"], row.extra["stored"]
    assert acknowledged == row.extra["requests"] > 0 and row.extra["failed"] == 0
    assert acknowledged <= stored <= acknowledged + load.WRITE_CONNECTIONS
    assert "none lost" in row.note and ">= 500/s" in row.target
