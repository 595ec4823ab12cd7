"""Plans of many classes: the plan's answer summarised past ``plan_classes_inline``, the
class table paged by ``GET /v1/plans/{plan_id}/classes``, the report over all classes.

Two services on one database: one lists every class inline (the answer plans have always
had, the oracle here), the other only a few; the summarised answer and its pages must
give back exactly the whole table. The 1e6-class figures are in benchmarks/ (a row of
``make bench``), measured there and stated in docs/operations/tokens-and-limits.md.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from sampleplan.client import AsyncSamplePlanClient, RemoteWeightedSampler, SamplePlanClient
from sampleplan.service.config import Settings
from sampleplan.service.main import create_app
from tests.helpers.servers import LiveServer

INLINE = 5
# 23 classes, a long tail: the rare ones repeat their samples many times per epoch.
LABELS = [f"c{c:02d}" for c in range(23) for _ in range(1 + (c * c) // 3)]
SCHEDULE = {"kind": "power", "start": 0.0, "end": 1.0, "epochs": 4}


@pytest.fixture(scope="module")
def database(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("many-classes") / "sampleplan.sqlite3"


@pytest.fixture(scope="module")
def whole(database: Path) -> Iterator[TestClient]:
    with TestClient(create_app(Settings(database_url=f"sqlite:///{database}"))) as api:
        yield api


@pytest.fixture(scope="module")
def summarised(database: Path, whole: TestClient) -> Iterator[TestClient]:
    settings = Settings(database_url=f"sqlite:///{database}", plan_classes_inline=INLINE)
    with TestClient(create_app(settings)) as api:
        yield api


def create(api: TestClient, **config: Any) -> dict[str, Any]:
    answer = api.post("/v1/plans", json={"labels": LABELS, **config})
    assert answer.status_code in (200, 201), answer.text
    body: dict[str, Any] = answer.json()
    return body


def pages(api: TestClient, path: str) -> list[dict[str, Any]]:
    """Every row, following ``next`` from ``path``."""
    rows: list[dict[str, Any]] = []
    next_path: str | None = path
    start: int | None = None
    while next_path is not None:
        answer = api.get(next_path)
        assert answer.status_code == 200, answer.text
        page = answer.json()
        start = page["offset"] if start is None else start
        assert page["offset"] == start + len(rows)
        rows += page["classes"]
        next_path = page["next"]
    return rows


def test_a_small_plan_answers_as_it_always_has(whole: TestClient) -> None:
    body = create(whole)
    assert "classes_page" not in body
    assert len(body["classes"]) == 23
    assert whole.get(f"/v1/plans/{body['id']}").json() == body


@pytest.mark.parametrize("config", [{}, {"replacement": False, "num_samples": 100}])
def test_past_the_threshold_the_answer_is_summarised_and_pages_give_the_whole_table(
    whole: TestClient, summarised: TestClient, config: dict[str, Any]
) -> None:
    full = create(whole, **config)
    short = create(summarised, **config)
    assert short["id"] == full["id"]
    assert short["classes"] == full["classes"][:INLINE]
    assert short["classes_page"] == {
        "total": 23,
        "offset": 0,
        "limit": INLINE,
        "next": f"/v1/plans/{full['id']}/classes?offset={INLINE}&limit={INLINE}",
    }
    # Everything else is the plan's answer as it was.
    rest = {k: v for k, v in short.items() if k not in ("classes", "classes_page")}
    assert rest == {k: v for k, v in full.items() if k != "classes"}
    assert summarised.get(f"/v1/plans/{full['id']}").json() == short
    # Following `next` from the summarised answer gives back the rest of the table.
    assert short["classes"] + pages(summarised, short["classes_page"]["next"]) == full["classes"]
    # And the counts are the labels' own.
    counts = Counter(LABELS)
    assert [(r["class"], r["count"]) for r in full["classes"]] == sorted(counts.items())


def test_pages_of_any_size_and_past_the_end(whole: TestClient) -> None:
    full = create(whole)
    plan_id = full["id"]
    for limit in (1, 4, 23, 10_000):
        assert pages(whole, f"/v1/plans/{plan_id}/classes?limit={limit}") == full["classes"]
    page = whole.get(f"/v1/plans/{plan_id}/classes", params={"offset": 20, "limit": 5}).json()
    assert (page["total"], page["offset"], page["limit"], page["next"]) == (23, 20, 5, None)
    assert page["classes"] == full["classes"][20:]
    past = whole.get(f"/v1/plans/{plan_id}/classes", params={"offset": 50}).json()
    assert (past["classes"], past["next"]) == ([], None)


def test_pages_of_an_epoch_of_a_schedule(whole: TestClient, summarised: TestClient) -> None:
    plan_id = create(whole, schedule=SCHEDULE)["id"]
    for epoch in (0, 2, 4):
        full = whole.get(f"/v1/plans/{plan_id}", params={"epoch": epoch}).json()
        short = summarised.get(f"/v1/plans/{plan_id}", params={"epoch": epoch}).json()
        suffix = f"&epoch={epoch}" if epoch else ""
        assert short["classes_page"]["next"].endswith(suffix)
        assert (
            short["classes"] + pages(summarised, short["classes_page"]["next"]) == (full["classes"])
        )
    assert (
        whole.get(f"/v1/plans/{plan_id}", params={"epoch": 1}).json()["classes"]
        != (whole.get(f"/v1/plans/{plan_id}").json()["classes"])
    )


def test_label_set_plans_page_too(whole: TestClient, summarised: TestClient) -> None:
    sets = [[c % 9, (c * 7) % 9] for c in range(40)] + [[], [8]]
    full = whole.post("/v1/plans", json={"labels": sets}).json()
    short = summarised.post("/v1/plans", json={"labels": sets}).json()
    assert short["label_sets"] == full["label_sets"]
    assert short["classes"] + pages(summarised, short["classes_page"]["next"]) == full["classes"]


@pytest.mark.parametrize(
    ("query", "status"),
    [
        ({"limit": 0}, 422),
        ({"limit": 10_001}, 422),
        ({"offset": -1}, 422),
        ({"offset": 2**63}, 422),
        ({"epoch": -1}, 422),
    ],
)
def test_bad_pages_are_refused(whole: TestClient, query: dict[str, int], status: int) -> None:
    plan_id = create(whole)["id"]
    answer = whole.get(f"/v1/plans/{plan_id}/classes", params=query)
    assert answer.status_code == status
    assert answer.headers["content-type"] == "application/problem+json"


def test_an_unknown_plan_has_no_classes(whole: TestClient) -> None:
    answer = whole.get(f"/v1/plans/{'0' * 64}/classes")
    assert answer.status_code == 404
    assert answer.headers["content-type"] == "application/problem+json"


def _warning(html: str) -> str:
    found = re.search(r'<div class="(warning|ok)">.*?</div>', html, re.S)
    assert found is not None
    return found.group(0)


def test_the_report_of_a_summarised_plan_warns_over_every_class(
    whole: TestClient, summarised: TestClient
) -> None:
    plan_id = create(whole)["id"]
    full = whole.get(f"/v1/plans/{plan_id}/report").text
    short = summarised.get(f"/v1/plans/{plan_id}/report").text
    # The rare classes are past the first INLINE rows; the warning still names them.
    assert "Minority samples repeat" in _warning(full)
    assert _warning(short) == _warning(full)
    assert "in 23 classes" in short
    assert f"The table shows the first {INLINE} of 23 classes" in short
    assert short.count('<tr><td class="class">') == INLINE
    assert full.count('<tr><td class="class">') == 23


def test_the_clients_page_through_a_summarised_plan(database: Path, whole: TestClient) -> None:
    full = create(whole)
    settings = Settings(database_url=f"sqlite:///{database}", plan_classes_inline=INLINE)
    with LiveServer(create_app(settings)) as server, SamplePlanClient(server.url) as api:
        plan = api.get_plan(full["id"])
        assert (len(plan.classes), plan.num_classes, plan.classes_complete) == (INLINE, 23, False)
        page = api.classes(plan.id, 3, 4)
        assert (page.total, page.offset, len(page.classes)) == (23, 3, 4)
        assert [r.label for r in page.classes] == [r["class"] for r in full["classes"][3:7]]
        rows = api.all_classes(plan)
        assert [(r.label, r.count, r.expected_share) for r in rows] == [
            (r["class"], r["count"], r["expected_share"]) for r in full["classes"]
        ]

        async def read() -> list[Any]:
            async with AsyncSamplePlanClient(server.url) as async_api:
                plan = await async_api.get_plan(full["id"])
                page = await async_api.classes(plan.id, 0, 2)
                assert len(page.classes) == 2 and page.next is not None
                return await async_api.all_classes(plan)

        assert [r.label for r in asyncio.run(read())] == [r["class"] for r in full["classes"]]


def test_a_sampler_reads_every_count_of_a_summarised_dynamic_balance_plan(
    database: Path,
) -> None:
    """Its epoch length is a function of all the class counts, not of the first few."""
    settings = Settings(database_url=f"sqlite:///{database}", plan_classes_inline=INLINE)
    with LiveServer(create_app(settings)) as server, SamplePlanClient(server.url) as api:
        plan = api.create_plan(labels=LABELS, schedule={"kind": "dynamic_balance", "lambda": 0.5})
        assert not plan.classes_complete
        online = RemoteWeightedSampler(plan.id, api)  # caches the plan on the way
        # Offline, from the cache: the counts come from the cached class codes.
        offline = RemoteWeightedSampler(plan.id, None)
        assert not offline.plan.classes_complete
        counts = Counter(LABELS).values()
        smallest = min(counts)
        for sampler in (online, offline):
            for epoch in range(3):
                sampler.set_epoch(epoch)
                # catalyst's DynamicBalanceClassSampler (downsampling), written out:
                # int((n / n_min) ** (lambda ** epoch) * n_min) per class.
                quotas = [int((n / smallest) ** (0.5**epoch) * smallest) for n in counts]
                assert len(sampler) == sum(quotas) == len(list(sampler))


def test_the_schedule_chart_of_a_summarised_plan_is_the_whole_plan_s(
    whole: TestClient, summarised: TestClient
) -> None:
    plan_id = create(whole, schedule=SCHEDULE)["id"]
    charts = [
        re.search(
            r'<svg class="schedule-chart".*?</svg>',
            api.get(f"/v1/plans/{plan_id}/report").text,
            re.S,
        )
        for api in (whole, summarised)
    ]
    assert charts[0] is not None and charts[1] is not None
    assert charts[0].group(0) == charts[1].group(0)
    assert charts[0].group(0).count("<polyline") == 12


def test_a_large_threshold_still_points_to_pages_the_service_answers(database: Path) -> None:
    """The next page's limit is at most the largest page, whatever the threshold."""
    many = list(range(10_050))
    settings = Settings(database_url=f"sqlite:///{database}", plan_classes_inline=10_020)
    with TestClient(create_app(settings)) as api:
        short = api.post("/v1/plans", json={"labels": many}).json()
        assert len(short["classes"]) == 10_020
        assert short["classes_page"]["next"].endswith("?offset=10020&limit=10000")
        rest = pages(api, short["classes_page"]["next"])
        assert [r["class"] for r in short["classes"] + rest] == many


def test_a_plan_of_200_000_classes_answers_a_few_megabytes_quickly(whole: TestClient) -> None:
    """Generous bounds on a size that runs in seconds; the 1e6 figures are benchmarks'."""
    started = time.monotonic()
    created = whole.post("/v1/plans", json={"labels": list(range(200_000))})
    seconds = time.monotonic() - started
    assert created.status_code == 201
    assert len(created.content) < 3_000_000  # the first 10 000 rows: about 2.5 MB
    assert created.json()["classes_page"]["total"] == 200_000
    assert seconds < 30, seconds
    plan_id = created.json()["id"]
    started = time.monotonic()
    assert whole.get(f"/v1/plans/{plan_id}/report").status_code == 200
    assert (
        whole.get(f"/v1/plans/{plan_id}/classes", params={"offset": 199_999}).json()["classes"][0][
            "class"
        ]
        == 199_999
    )
    assert time.monotonic() - started < 30
