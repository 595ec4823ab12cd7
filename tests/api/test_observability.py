"""Request ids, JSON access logs, Prometheus metrics and readiness."""

from __future__ import annotations

import json
import os
import select
import uuid
from collections.abc import Iterator

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from sampleplan.service.api import observability
from sampleplan.service.api.observability import new_request_id
from sampleplan.service.config import Settings
from sampleplan.service.main import create_app
from tests.helpers.databases import POSTGRES_ADMIN_URL

LABELS = [0] * 12 + [1] * 5 + [2] * 2


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """``{(sample name, sorted labels): value}`` of a Prometheus text exposition."""
    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def _access_lines(stderr: str) -> list[dict[str, object]]:
    lines = [json.loads(line) for line in stderr.splitlines() if line.startswith("{")]
    return [line for line in lines if line.get("logger") == "sampleplan.access"]


def test_every_response_carries_a_request_id(api: TestClient) -> None:
    generated = {api.get("/healthz").headers["x-request-id"] for _ in range(3)}
    assert len(generated) == 3
    assert api.get("/v1/plans/nope", headers={"X-Request-ID": "job-7/rank-3"}).headers[
        "x-request-id"
    ] == ("job-7/rank-3")
    # Ids that could forge log structure are replaced, not echoed.
    replaced = api.get("/healthz", headers={"X-Request-ID": 'a" b'}).headers["x-request-id"]
    assert replaced != 'a" b' and len(replaced) == 32


def _ids_of_a_forked_child() -> list[str]:
    """Four ids generated in a child forked from this process (which writes them to a pipe
    and exits at once: nothing in it takes a lock another thread may have held)."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        os.write(write_end, " ".join(new_request_id() for _ in range(4)).encode())
        os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as pipe:
        ready, _, _ = select.select([pipe], [], [], 30)
        assert ready, "the forked child wrote nothing"
        text = pipe.read().decode()
    os.waitpid(pid, 0)
    return text.split()


def test_generated_request_ids_are_version_4_uuids_apart_in_forked_workers() -> None:
    """A generated id is a version-4 UUID's 32 hex digits (``uuid.uuid4().hex``'s form),
    and processes forked from one parent do not repeat each other's."""
    for _ in range(200):
        parsed = uuid.UUID(hex=new_request_id())
        assert parsed.version == 4 and parsed.variant == uuid.RFC_4122
    # Ids are made in batches: the children are forked with ids of this process's batch
    # left, which they must not hand out (nor each other's).
    observability._SPARE_IDS.clear()
    new_request_id()
    assert observability._SPARE_IDS
    seen = _ids_of_a_forked_child() + _ids_of_a_forked_child()
    seen += [new_request_id() for _ in range(4)]
    assert len(set(seen)) == len(seen) == 12


@pytest.fixture
def logging_api(sqlite_url: str) -> Iterator[TestClient]:
    """An app logging access lines as JSON (the suite's default level is warning)."""
    settings = Settings(database_url=sqlite_url, log_level="info", log_format="json")
    with TestClient(create_app(settings)) as client:
        yield client


def test_requests_are_logged_as_json_lines_with_their_id(
    logging_api: TestClient, capsys: pytest.CaptureFixture[str]
) -> None:
    api = logging_api
    capsys.readouterr()
    rid = uuid.uuid4().hex
    created = api.post("/v1/plans", json={"labels": LABELS}, headers={"X-Request-ID": rid})
    missing = api.get("/v1/plans/unknown")
    lines = _access_lines(capsys.readouterr().err)
    by_id = {line["request_id"]: line for line in lines}
    line = by_id[rid]
    assert line["method"] == "POST" and line["route"] == "/v1/plans" and line["status"] == 201
    assert line["level"] == "info" and isinstance(line["duration_ms"], float)
    other = by_id[missing.headers["x-request-id"]]
    assert other["route"] == "/v1/plans/{plan_id}" and other["status"] == 404
    assert created.status_code == 201


def test_metrics_count_requests_plans_datasets_and_indices(sqlite_url: str) -> None:
    settings = Settings(database_url=sqlite_url, api_tokens="secret")
    auth = {"Authorization": "Bearer secret"}
    with TestClient(create_app(settings)) as client:
        dataset = client.post("/v1/datasets", json={"labels": LABELS}, headers=auth).json()["id"]
        client.post("/v1/datasets", json={"labels": LABELS}, headers=auth)  # 200: not new
        plan = client.post("/v1/plans", json={"dataset_id": dataset}, headers=auth).json()["id"]
        client.post(
            "/v1/plans", json={"labels": [5, 6, 6]}, headers=auth
        )  # inline: new dataset too
        for epoch in range(3):
            client.get(
                f"/v1/plans/{plan}/indices", params={"epoch": epoch, "limit": 7}, headers=auth
            )
        client.get(f"/v1/plans/{plan}/indices")  # no token: 401
        client.get("/v1/nowhere", headers=auth)
        response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    samples = _samples(response.text)

    def value(name: str, **labels: str) -> float:
        return samples.get((name, tuple(sorted(labels.items()))), 0.0)

    assert (
        value("sampleplan_http_requests_total", method="POST", route="/v1/datasets", status="201")
        == 1
    )
    assert (
        value("sampleplan_http_requests_total", method="POST", route="/v1/datasets", status="200")
        == 1
    )
    indices_route = "/v1/plans/{plan_id}/indices"
    assert (
        value("sampleplan_http_requests_total", method="GET", route=indices_route, status="200")
        == 3
    )
    # Refused before routing, still counted under the route's template, not the raw path.
    assert (
        value("sampleplan_http_requests_total", method="GET", route=indices_route, status="401")
        == 1
    )
    assert (
        value("sampleplan_http_requests_total", method="GET", route="unmatched", status="404") == 1
    )
    assert (
        value("sampleplan_http_request_duration_seconds_count", method="GET", route=indices_route)
        == 4
    )
    assert value("sampleplan_plans_created_total") == 2
    assert value("sampleplan_datasets_created_total") == 2
    assert value("sampleplan_indices_served_total", algorithm="torch") == 21
    assert value("sampleplan_draw_duration_seconds_count", algorithm="torch") == 3
    assert value("sampleplan_http_requests_in_flight") == 1  # the scrape itself
    assert any(name == "sampleplan_build_info" for name, _ in samples)
    assert any(name == "process_resident_memory_bytes" for name, _ in samples)


def test_apps_side_by_side_keep_their_own_metrics(sqlite_url: str) -> None:
    with TestClient(create_app(Settings(database_url=sqlite_url))) as first:
        first.post("/v1/datasets", json={"labels": LABELS})
        with TestClient(create_app(Settings(database_url=sqlite_url))) as second:
            text = second.get("/metrics").text
    assert _samples(text).get(("sampleplan_datasets_created_total", ()), 0.0) == 0.0


def test_readyz_fails_when_the_database_goes_away(
    fresh_postgres_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    name = sa.engine.make_url(fresh_postgres_url).database
    settings = Settings(database_url=fresh_postgres_url, log_format="json")
    with TestClient(create_app(settings)) as client:
        assert client.get("/readyz").json() == {"status": "ready"}
        admin = sa.create_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE "{name}" WITH (FORCE)'))
        admin.dispose()
        capsys.readouterr()
        response = client.get("/readyz")
        plan = client.get("/v1/plans/whatever")
        logged = capsys.readouterr().err
        assert response.status_code == 503
        assert response.headers["content-type"] == "application/problem+json"
        assert response.json()["type"].endswith(":storage-unavailable")
        assert client.get("/healthz").status_code == 200  # alive, just not ready
        # Requests that need the database say so too, as a 503 rather than a 500.
        assert plan.status_code == 503
    # The driver's message names the database's host and port: the log has it, the
    # clients do not.
    url = sa.engine.make_url(fresh_postgres_url)
    for answer in (response, plan):
        detail = answer.json()["detail"]
        assert str(url.port) not in detail and str(url.host) not in detail and name not in detail
    assert str(url.port) in logged


def test_log_settings_accept_any_case(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SAMPLEPLAN_LOG_LEVEL", "WARNING")
    monkeypatch.setenv("SAMPLEPLAN_LOG_FORMAT", "Text")
    settings = Settings()
    assert (settings.log_level, settings.log_format) == ("warning", "text")


def test_json_log_times_are_isoformat_milliseconds_in_utc() -> None:
    """The formatter keeps the text of the last second; every time is still datetime's."""
    from datetime import datetime, timezone

    from sampleplan.service.logs import JsonFormatter

    formatter = JsonFormatter()
    moments = [1765069800 + i / 997 for i in range(3000)]  # many to a second, in order
    moments += [0.0, 1e9 + 0.0005, 1765069800.9999996, 1765069799.0004, 4102444800.5]
    for created in moments:
        expected = datetime.fromtimestamp(created, timezone.utc).isoformat(timespec="milliseconds")
        assert formatter.time_text(created) == expected


def test_access_lines_written_directly_are_the_lines_logging_writes(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """NOTE [Access lines]: with the service's own handler alone, the access log writes
    the line itself; with anything else on the way, logging writes it. The same text."""
    import logging
    import time

    from sampleplan.service.api.observability import RequestRecorder, access_logger
    from sampleplan.service.logs import configure_logging, sole_json_handler
    from sampleplan.service.metrics import ServiceMetrics

    service_logger = logging.getLogger("sampleplan")
    # The service's handler alone (the suite's capture handlers come back afterwards).
    monkeypatch.setattr(service_logger, "handlers", [])
    previous_level = service_logger.level
    configure_logging("json", "info")
    monkeypatch.setattr(time, "time", lambda: 1765069800.4567)
    recorder = RequestRecorder(ServiceMetrics(), routes=lambda scope: "unused")  # type: ignore[arg-type]
    scope = {"method": "GET", "path": "/v1/plans/p/indices", "client": ("10.0.0.7", 5)}
    lines = []
    for direct in (True, False):
        if not direct:  # a filter on the way: the record goes through logging
            monkeypatch.setattr(access_logger, "filters", [lambda record: True])
        assert (sole_json_handler(access_logger, logging.INFO) is not None) is direct
        capsys.readouterr()
        recorder.record(scope, 200, 0.0012345, "rid-1", "/v1/plans/{plan_id}/indices")
        lines.append(capsys.readouterr().err)
    service_logger.setLevel(previous_level)
    assert lines[0] == lines[1]
    assert json.loads(lines[0]) == {
        "time": "2025-12-07T01:10:00.456+00:00",
        "level": "info",
        "logger": "sampleplan.access",
        "message": "GET /v1/plans/p/indices 200",
        "request_id": "rid-1",
        "method": "GET",
        "path": "/v1/plans/p/indices",
        "route": "/v1/plans/{plan_id}/indices",
        "status": 200,
        "duration_ms": 1.234,
        "client": "10.0.0.7",
    }


def test_access_lines_on_an_event_loop_are_written_once_a_round(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """NOTE [Access lines written by the round]: the lines of one round of a loop go out
    in one write, in order, before the loop's next round; off a loop, one by one."""
    import asyncio
    import io
    import logging

    from sampleplan.service.api.observability import RequestRecorder, access_logger
    from sampleplan.service.logs import configure_logging, sole_json_handler
    from sampleplan.service.metrics import ServiceMetrics

    service_logger = logging.getLogger("sampleplan")
    monkeypatch.setattr(service_logger, "handlers", [])
    previous_level = service_logger.level
    configure_logging("json", "info")
    assert sole_json_handler(access_logger, logging.INFO) is not None

    class Recording(io.StringIO):
        def __init__(self) -> None:
            super().__init__()
            self.writes: list[str] = []

        def write(self, text: str) -> int:
            self.writes.append(text)
            return super().write(text)

    stderr = Recording()
    monkeypatch.setattr("sys.stderr", stderr)
    recorder = RequestRecorder(ServiceMetrics(), routes=lambda scope: "unused")  # type: ignore[arg-type]
    route = "/v1/plans/{plan_id}/indices"

    def answered(number: int) -> None:
        scope = {"method": "GET", "path": f"/v1/plans/p{number}/indices", "client": None}
        recorder.record(scope, 200, 0.001, f"rid-{number}", route)

    async def rounds() -> list[int]:
        for number in range(3):  # one round: three requests
            answered(number)
        assert stderr.writes == []  # not yet: the round goes on
        await asyncio.sleep(0)  # the next round
        seen = [len(stderr.writes)]
        answered(3)
        await asyncio.sleep(0)
        seen.append(len(stderr.writes))
        return seen

    try:
        assert asyncio.run(rounds()) == [1, 2]
        answered(4)  # off any loop: at once
        assert len(stderr.writes) == 3
    finally:
        service_logger.setLevel(previous_level)
    lines = [json.loads(line) for line in stderr.getvalue().splitlines()]
    assert [line["request_id"] for line in lines] == [f"rid-{n}" for n in range(5)]
    assert stderr.writes[0].count("\n") == 3


def test_a_batch_left_by_a_stopped_loop_is_written_at_exit(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import asyncio
    import io
    import logging

    from sampleplan.service.logs import StderrHandler, _write_batches_left

    stderr = io.StringIO()
    monkeypatch.setattr("sys.stderr", stderr)
    handler = StderrHandler()
    loop = asyncio.new_event_loop()

    async def line_then_stop() -> None:
        handler.emit_made(str, ("last words",), logging.makeLogRecord)
        loop.stop()  # the loop stops before the batch's callback runs

    try:
        task = loop.create_task(line_then_stop())
        loop.run_forever()
        assert task.done()
    finally:
        loop.close()
    assert stderr.getvalue() == ""
    _write_batches_left()  # what runs at exit
    assert stderr.getvalue() == "last words\n"


@pytest.mark.parametrize("loop_kind", ["asyncio", "uvloop"])
def test_a_rounds_lines_find_its_loop_once(monkeypatch: pytest.MonkeyPatch, loop_kind: str) -> None:
    """NOTE [The round's loop, known without a system call]: on asyncio's loop only the
    round's first line asks which loop runs (a getpid on Python 3.11), the others join
    its batch by their thread; on a loop that does not record its thread (uvloop's) every
    line asks. Either way each round's lines go out together, in order."""
    import asyncio
    import io
    import logging

    from sampleplan.service import logs

    if loop_kind == "uvloop":
        uvloop = pytest.importorskip("uvloop")
        new_loop = uvloop.new_event_loop
    else:
        new_loop = asyncio.new_event_loop
    asked: list[object] = []

    def running_loop() -> asyncio.AbstractEventLoop | None:
        loop = asyncio.events._get_running_loop()
        asked.append(loop)
        return loop

    monkeypatch.setattr(logs, "_get_running_loop", running_loop)
    stderr = io.StringIO()
    monkeypatch.setattr("sys.stderr", stderr)
    handler = logs.StderrHandler()

    async def two_rounds() -> list[str]:
        seen = []
        for round_ in range(2):
            for number in range(3):
                handler.emit_made(str, (f"line {round_}.{number}",), logging.makeLogRecord)
            seen.append(stderr.getvalue())
            await asyncio.sleep(0)
        return seen

    loop = new_loop()
    try:
        seen = loop.run_until_complete(two_rounds())
    finally:
        loop.close()
    first = "".join(f"line 0.{n}\n" for n in range(3))
    assert seen == ["", first]
    assert stderr.getvalue() == first + "".join(f"line 1.{n}\n" for n in range(3))
    assert len(asked) == (2 if loop_kind == "asyncio" else 6)

    if loop_kind == "uvloop":
        return  # uvloop runs the callbacks already scheduled before it stops
    # A loop stopped with its batch open leaves the batch (written at exit); a line of
    # another loop on the same thread joins that loop's own round, not the batch left.
    stopped = new_loop()

    async def line_then_stop() -> None:
        handler.emit_made(str, ("left",), logging.makeLogRecord)
        stopped.stop()

    stopped.create_task(line_then_stop())
    stopped.run_forever()
    stopped.close()

    async def one_line() -> str:
        handler.emit_made(str, ("next",), logging.makeLogRecord)
        await asyncio.sleep(0)
        return stderr.getvalue()

    loop = new_loop()
    try:
        written = loop.run_until_complete(one_line())
    finally:
        loop.close()
    assert written.endswith("line 1.2\nnext\n") and "left" not in written
    handler.flush_batches()
    assert stderr.getvalue().endswith("next\nleft\n")


@pytest.mark.skipif(not hasattr(os, "fork"), reason="os.fork")
def test_a_forked_child_forgets_its_parents_batches() -> None:
    """A child forked in the middle of a round does not join its parent's batch: its copy
    of the parent's loop still records the thread, which is the child's too."""
    import asyncio
    import logging

    from sampleplan.service.logs import StderrHandler

    handler = StderrHandler()

    async def fork_mid_round() -> int:
        handler.emit_made(str, ("parent",), logging.makeLogRecord)
        pid = os.fork()
        if pid == 0:  # the child: nothing known, so a line asks for the running loop
            os._exit(0 if handler._threads == {} else 1)
        _, status = os.waitpid(pid, 0)
        return status

    assert asyncio.run(fork_mid_round()) == 0


def test_access_lines_written_around_what_changes_are_the_lines_written_whole() -> None:
    """NOTE [An access line around what changes]: a line made of its repeating parts
    and its time, request id and duration is the JSON writer's line of its fields, for
    paths, clients and request ids JSON must escape, and durations of every size."""
    import logging
    import random

    from sampleplan.service.api import observability
    from sampleplan.service.logs import JsonFormatter

    formatter = JsonFormatter()
    rng = random.Random(5)
    paths = [
        "/v1/plans/p/indices",
        '/v1/plans/"quoted"/indices',
        "/v1/plans/back\\slash/indices",
        "/v1/plans/new\nline\t\x00\x1f\x7f/indices",
        "/v1/plans/ünïcödé/日本/indices",
        '/"request_id":"/"duration_ms":0.0/{"time":"',
        "",
    ]
    request_ids = ["a" * 32, "0f" * 16, "caller-id_1.2:3/4+5=6@7", 'quote"d', "back\\slash", ""]
    clients = ["127.0.0.1", "::1", None, 'odd"client']
    durations = [0.0, 1e-7, 0.0012345, 0.5, 3.25, 12345.678, 1e9, 1e12 + 0.5]
    durations += [rng.random() * 10.0 ** rng.randrange(-7, 10) for _ in range(300)]
    created = 1765069800.123
    for index, elapsed in enumerate(durations):
        fields = (
            rng.choice([logging.INFO, logging.DEBUG]),
            rng.choice(request_ids),
            rng.choice(["GET", "HEAD", "POST"]),
            paths[index % len(paths)],
            "/v1/plans/{plan_id}/indices",
            rng.choice([200, 404, 422]),
            elapsed,
            clients[index % len(clients)],
        )
        request_id = fields[1]
        whole = observability._whole_access_line(formatter, created, *fields)
        for _ in range(2):  # its parts made, then found
            line = observability._access_line(formatter, created, *fields)
            assert line == whole
            assert json.loads(line)["request_id"] == request_id
