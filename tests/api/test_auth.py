"""Bearer tokens: refused without one or with a wrong one, accepted with any configured one."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from sampleplan.client import ClientRequestError, SamplePlanClient
from sampleplan.service.api.auth import load_api_tokens, token_matches
from sampleplan.service.config import Settings
from sampleplan.service.main import create_app
from tests.helpers import reference
from tests.helpers.servers import LiveServer

TOKENS = "alpha-token-1, beta-token-2"
LABELS = [0, 0, 0, 1, 1, 2]


@pytest.fixture
def secured(sqlite_url: str) -> Iterator[TestClient]:
    with TestClient(create_app(Settings(database_url=sqlite_url, api_tokens=TOKENS))) as client:
        yield client


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _is_problem_401(response: object, *, invalid_token: bool) -> None:
    from httpx import Response

    assert isinstance(response, Response)
    assert response.status_code == 401
    assert response.headers["content-type"] == "application/problem+json"
    challenge = response.headers["www-authenticate"]
    assert challenge.startswith("Bearer ")
    assert ('error="invalid_token"' in challenge) is invalid_token
    body = response.json()
    assert body["status"] == 401 and body["type"].endswith(":unauthorized")


def test_without_tokens_configured_the_api_is_open(api: TestClient) -> None:
    assert api.post("/v1/datasets", json={"labels": LABELS}).status_code == 201


def test_without_a_token_every_v1_route_is_refused(secured: TestClient) -> None:
    for method, path in [
        ("POST", "/v1/datasets"),
        ("GET", "/v1/datasets/abc"),
        ("POST", "/v1/plans"),
        ("GET", "/v1/plans/abc"),
        ("GET", "/v1/plans/abc/weights"),
        ("GET", "/v1/plans/abc/indices"),
        ("POST", "/v1/sample"),
        ("GET", "/v1/no-such-route"),
    ]:
        response = secured.request(method, path, json={"labels": LABELS})
        _is_problem_401(response, invalid_token=False)
        assert "Authorization: Bearer" in response.json()["detail"]


def test_a_wrong_token_is_refused(secured: TestClient) -> None:
    for token in [
        "wrong",
        "alpha-token-",
        "alpha-token-1x",
        "ALPHA-TOKEN-1",
        "alpha-token-1,beta-token-2",
    ]:
        response = secured.post("/v1/datasets", json={"labels": LABELS}, headers=_bearer(token))
        _is_problem_401(response, invalid_token=True)
    # Not a bearer credential at all.
    response = secured.post(
        "/v1/datasets", json={"labels": LABELS}, headers={"Authorization": "Basic YWxwaGE6eA=="}
    )
    _is_problem_401(response, invalid_token=False)


def test_each_configured_token_is_accepted(secured: TestClient) -> None:
    first = secured.post("/v1/datasets", json={"labels": LABELS}, headers=_bearer("alpha-token-1"))
    assert first.status_code == 201
    again = secured.post(
        "/v1/datasets", json={"labels": LABELS}, headers={"authorization": "bearer beta-token-2"}
    )
    assert again.status_code == 200 and again.json()["id"] == first.json()["id"]


def test_probes_metrics_and_docs_stay_open(secured: TestClient) -> None:
    for path in ["/healthz", "/readyz", "/metrics", "/openapi.json", "/docs", "/redoc"]:
        assert secured.get(path).status_code == 200, path


def test_the_docs_static_assets_open_and_nothing_else_newly(secured: TestClient) -> None:
    """The docs pages load their script, styles and favicon without a token (issue 22);
    other paths under the static mount, and the API, still need one."""
    for name in ("swagger-ui-bundle.js", "swagger-ui.css", "redoc.standalone.js", "favicon.png"):
        response = secured.get(f"/static/docs/{name}")
        assert response.status_code == 200, name
        assert len(response.content) > 0
    for path in [
        "/static/docs/",
        "/static/docs/other.js",
        "/static/docs/../docs/favicon.png/x",
        "/static/docs/favicon.png/",
        "/static/docs/FAVICON.PNG",
        "/v1/plans/x",
    ]:
        _is_problem_401(secured.get(path), invalid_token=False)


def test_a_refused_request_writes_nothing(secured: TestClient) -> None:
    secured.post("/v1/plans", json={"labels": LABELS}, headers=_bearer("wrong"))
    assert secured.app.state.catalog.store.count() == (0, 0)  # type: ignore[attr-defined]


def test_the_openapi_document_declares_bearer_auth(secured: TestClient) -> None:
    schema = secured.get("/openapi.json").json()
    assert schema["components"]["securitySchemes"]["HTTPBearer"]["scheme"].lower() == "bearer"
    operation = schema["paths"]["/v1/plans"]["post"]
    assert operation["security"] == [{"HTTPBearer": []}]
    assert "application/problem+json" in operation["responses"]["401"]["content"]
    assert "security" not in schema["paths"]["/healthz"]["get"]
    # Every /v1 operation, HEAD included, documents its 401 and the header that comes with it.
    v1 = [
        (path, method, operation)
        for path, operations in schema["paths"].items()
        if path.startswith("/v1/")
        for method, operation in operations.items()
    ]
    assert any(method == "head" for _, method, _ in v1)
    for path, method, operation in v1:
        refused = operation["responses"]["401"]
        assert "WWW-Authenticate" in refused["headers"], (path, method)
        assert operation["security"] == [{"HTTPBearer": []}], (path, method)


def test_tokens_come_from_the_environment_and_a_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "tokens"
    path.write_text("# rotated 2026-11\nfile-token-1\n\n  file-token-2  \n", encoding="utf-8")
    monkeypatch.setenv("SAMPLEPLAN_API_TOKENS", " env-token ,, alpha-token-1")
    monkeypatch.setenv("SAMPLEPLAN_API_TOKENS_FILE", str(path))
    settings = Settings()
    assert "env-token" not in repr(settings)  # a secret: never printed with the settings
    assert load_api_tokens(settings) == (
        "env-token",
        "alpha-token-1",
        "file-token-1",
        "file-token-2",
    )


def test_a_missing_or_empty_tokens_file_stops_the_start(tmp_path: Path, sqlite_url: str) -> None:
    empty = tmp_path / "empty"
    empty.write_text("# nothing yet\n\n", encoding="utf-8")
    with pytest.raises(ValueError, match="holds no token"):
        create_app(Settings(database_url=sqlite_url, api_tokens_file=empty))
    with pytest.raises(ValueError, match="cannot read"):
        create_app(Settings(database_url=sqlite_url, api_tokens_file=tmp_path / "absent"))
    with pytest.raises(ValueError, match="printable ASCII"):
        create_app(Settings(database_url=sqlite_url, api_tokens="has space"))


def test_token_matching_checks_every_token() -> None:
    tokens = ("first", "second", "third")
    assert token_matches("third", tokens)
    assert not token_matches("", tokens)
    assert not token_matches("thir", tokens)


def test_the_client_sends_its_token(sqlite_url: str) -> None:
    server = LiveServer(create_app(Settings(database_url=sqlite_url, api_tokens=TOKENS))).start()
    try:
        with SamplePlanClient(server.url, token="beta-token-2", retries=0) as api:
            plan = api.create_plan(labels=LABELS, seed=4)
            got = api.indices(plan.id, epoch=1)
        expected = reference.weighted_stream(
            reference.inverse_frequency(LABELS), len(LABELS), True, 5
        )
        assert got.tolist() == expected
        with (
            SamplePlanClient(server.url, retries=0) as anonymous,
            pytest.raises(ClientRequestError) as caught,
        ):
            anonymous.get_plan(plan.id)
        assert caught.value.status_code == 401
    finally:
        server.stop()
