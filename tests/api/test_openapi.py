"""The API docs: every operation documented with examples, and pages that need no internet."""

from __future__ import annotations

import re
from typing import Any

import pytest
from fastapi.testclient import TestClient

from sampleplan.service.api import examples
from sampleplan.service.api.openapi import NAMED_ENUMS
from sampleplan.service.api.schemas import Problem
from sampleplan.service.api.uploads import OTHER_CONTENT, UPLOAD_MEDIA_TYPES

METHODS = {"get", "post", "put", "patch", "delete"}


@pytest.fixture(scope="module")
def schema(module_api: TestClient) -> dict[str, Any]:
    body: dict[str, Any] = module_api.get("/openapi.json").json()
    return body


def operations(schema: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (method, path, op)
        for path, item in schema["paths"].items()
        for method, op in item.items()
        if method in METHODS
    ]


def has_example(media: dict[str, Any]) -> bool:
    """An example, or a binary body (raw bytes or .npy), which no example could show."""
    binary = media.get("schema", {}).get("format") == "binary"
    return "example" in media or bool(media.get("examples")) or binary


def test_every_operation_is_documented(schema: dict[str, Any]) -> None:
    ops = operations(schema)
    assert len(ops) >= 11
    for method, path, op in ops:
        where = f"{method.upper()} {path}"
        assert op.get("summary"), f"{where} has no summary"
        assert op.get("description"), f"{where} has no description"
        if "requestBody" in op:
            body = op["requestBody"]
            for media_type, media in {**body["content"], **body.get(OTHER_CONTENT, {})}.items():
                assert has_example(media), f"{where}: request body {media_type} has no example"
        successes = [s for s in op["responses"] if s.startswith("2")]
        assert successes, f"{where} documents no success response"
        for status in successes:
            for media_type, media in op["responses"][status].get("content", {}).items():
                assert has_example(media), f"{where}: response {status} {media_type} has no example"
        params = op.get("parameters", [])
        if any(p["in"] == "path" for p in params):
            assert "404" in op["responses"], f"{where} does not document its 404"
            for p in params:
                if p["in"] == "path":
                    assert p.get("examples") or p.get("example"), (
                        f"{where}: {p['name']} has no example"
                    )
        if params or "requestBody" in op:
            assert "422" in op["responses"], f"{where} does not document its 422"


#: Every operation's id. Client generators name their functions after them, so they are
#: part of the API: a change here is a change of every generated client.
OPERATION_IDS = {
    ("get", "/healthz"): "healthz",
    ("get", "/readyz"): "readyz",
    ("get", "/metrics"): "metrics",
    ("post", "/v1/datasets"): "create_dataset",
    ("get", "/v1/datasets/{dataset_id}"): "get_dataset",
    ("get", "/v1/datasets/{dataset_id}/codes"): "get_codes",
    ("head", "/v1/datasets/{dataset_id}/codes"): "head_codes",
    ("get", "/v1/datasets/{dataset_id}/offsets"): "get_offsets",
    ("head", "/v1/datasets/{dataset_id}/offsets"): "head_offsets",
    ("get", "/v1/datasets/{dataset_id}/lengths"): "get_lengths",
    ("head", "/v1/datasets/{dataset_id}/lengths"): "head_lengths",
    ("post", "/v1/plans"): "create_plan",
    ("get", "/v1/plans/{plan_id}"): "get_plan",
    ("get", "/v1/plans/{plan_id}/classes"): "get_classes",
    ("get", "/v1/plans/{plan_id}/weights"): "get_weights",
    ("head", "/v1/plans/{plan_id}/weights"): "head_weights",
    ("get", "/v1/plans/{plan_id}/indices"): "get_indices",
    ("head", "/v1/plans/{plan_id}/indices"): "head_indices",
    ("get", "/v1/plans/{plan_id}/indices/summary"): "get_indices_summary",
    ("get", "/v1/plans/{plan_id}/report"): "get_report",
    ("get", "/v1/plans/{plan_id}/batches"): "get_batches",
    ("head", "/v1/plans/{plan_id}/batches"): "head_batches",
    ("get", "/v1/plans/{plan_id}/batches/summary"): "get_batches_summary",
    ("put", "/v1/runs/{run_id}"): "put_run",
    ("get", "/v1/runs/{run_id}"): "get_run",
    ("delete", "/v1/runs/{run_id}"): "delete_run",
    ("post", "/v1/runs/{run_id}/updates"): "post_update",
    ("get", "/v1/runs/{run_id}/weights"): "get_run_weights",
    ("get", "/v1/runs/{run_id}/indices"): "get_run_indices",
    ("head", "/v1/runs/{run_id}/indices"): "head_run_indices",
    ("post", "/v1/sample"): "sample",
}


def test_operation_ids_read_as_method_names(schema: dict[str, Any]) -> None:
    """``create_plan``, not FastAPI's ``create_plan_v1_plans_post``: unique snake_case ids."""
    ids = {
        (method, path): op["operationId"]
        for path, item in schema["paths"].items()
        for method, op in item.items()
    }
    assert ids == OPERATION_IDS
    assert len(set(ids.values())) == len(ids)
    assert all(re.fullmatch(r"[a-z]+(_[a-z]+)*", name) for name in ids.values())


def test_every_upload_media_type_is_documented(schema: dict[str, Any]) -> None:
    """The forms generators send in ``content``, the others in ``x-other-content``
    (NOTE [Bodies generators can send]): every media type the upload reads, once."""
    body = schema["paths"]["/v1/datasets"]["post"]["requestBody"]
    assert set(body["content"]) == {"application/json", "application/octet-stream"}
    assert sorted([*body["content"], *body[OTHER_CONTENT]]) == sorted(UPLOAD_MEDIA_TYPES)


def test_shared_enumerations_are_named_once(schema: dict[str, Any]) -> None:
    """``Space``, ``Strategy``...: one component each, referred to everywhere they are used."""
    inline = re.findall(r"'enum': (\[[^\]]*\])", repr(schema["paths"]))
    inline += re.findall(r"'enum': (\[[^\]]*\])", repr(schema["components"]["schemas"]))
    for name, values in NAMED_ENUMS.items():
        assert schema["components"]["schemas"][name]["enum"] == list(values)
        assert inline.count(repr(list(values))) == 1, name  # its own component's
        assert f"'$ref': '#/components/schemas/{name}'" in repr(schema)
    # A parameter's default stays beside the reference.
    get = schema["paths"]["/v1/plans/{plan_id}/indices"]["get"]
    space = next(p["schema"] for p in get["parameters"] if p["name"] == "space")
    assert (space["$ref"], space["default"]) == ("#/components/schemas/Space", "population")


def test_every_tag_is_declared_in_the_docs_order(schema: dict[str, Any]) -> None:
    """The docs' sections follow the declared tags: the API first, probes last, each
    described; the order the routers are tried in (probes first) does not leak into it."""
    declared = [tag["name"] for tag in schema["tags"]]
    assert declared[:2] == ["datasets", "plans"] and declared[-1] == "health"
    assert all(tag.get("description") for tag in schema["tags"])
    used = {tag for _, _, op in operations(schema) for tag in op.get("tags", [])}
    assert used <= set(declared), used - set(declared)


def test_error_responses_are_problem_json_with_examples(schema: dict[str, Any]) -> None:
    for method, path, op in operations(schema):
        for status, response in op["responses"].items():
            if status[0] not in "45":
                continue
            if method == "head":
                # A HEAD answer has no body: its statuses and headers are GET's.
                assert "content" not in response
                continue
            where = f"{method.upper()} {path} {status}"
            assert set(response["content"]) == {"application/problem+json"}, where
            media = response["content"]["application/problem+json"]
            assert media["schema"] == {"$ref": "#/components/schemas/Problem"}, where
            example = Problem.model_validate(media["example"])
            assert example.status == int(status), where
            assert response["description"], where


def test_every_reference_resolves(schema: dict[str, Any]) -> None:
    text = repr(schema)
    refs = set(re.findall(r"'\$ref': '#/components/schemas/([^']+)'", text))
    assert refs
    assert refs <= set(schema["components"]["schemas"])
    assert "HTTPValidationError" not in schema["components"]["schemas"]


def _without_versions(value: Any) -> Any:
    """Drop ``versions`` (this machine's) and nulls (FastAPI leaves them out of the schema)."""
    if isinstance(value, dict):
        return {
            k: _without_versions(v) for k, v in value.items() if k != "versions" and v is not None
        }
    if isinstance(value, list):
        return [_without_versions(v) for v in value]
    return value


def _approx(value: Any) -> Any:
    """Floats compared to 1e-9 relative: the figures are computed, not copied."""
    if isinstance(value, float):
        return pytest.approx(value, rel=1e-9, abs=1e-12)
    if isinstance(value, dict):
        return {k: _approx(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_approx(v) for v in value]
    return value


def _path_values(op: dict[str, Any]) -> dict[str, str]:
    values = {}
    for p in op.get("parameters", []):
        if p["in"] == "path":
            values[p["name"]] = next(iter(p["examples"].values()))["value"]
    return values


def test_trying_every_example_answers_as_documented(
    module_api: TestClient, schema: dict[str, Any]
) -> None:
    """What a newcomer does in /docs: create the example dataset and plan, then try the rest."""
    ops = operations(schema)
    # POSTs and PUTs first: they create what the other operations' path examples name;
    # DELETEs last, once everything else has read what they delete.
    ops.sort(key=lambda o: (o[0] == "delete", o[0] not in ("post", "put"), o[1] != "/v1/datasets"))
    tried = 0
    for method, path, op in ops:
        url = path.format(**_path_values(op))
        media = op.get("requestBody", {}).get("content", {}).get("application/json")
        if media is None:
            bodies: list[Any] = [None]
        elif "examples" in media:
            bodies = [e["value"] for e in media["examples"].values()]
        else:
            bodies = [media["example"]]
        for i, body in enumerate(bodies):
            response = module_api.request(method.upper(), url, json=body)
            where = f"{method.upper()} {path} example {i}"
            assert str(response.status_code) in op["responses"], (
                f"{where}: {response.status_code} {response.text}"
            )
            assert response.status_code < 300, f"{where}: {response.text}"
            tried += 1
            documented = op["responses"][str(response.status_code)].get("content", {})
            if i == 0 and "application/json" in documented:
                expected = documented["application/json"]["example"]
                assert _without_versions(response.json()) == _approx(_without_versions(expected)), (
                    where
                )
            if "text/html" in documented:
                assert response.text.startswith(documented["text/html"]["example"][:40])
    assert tried >= len(ops)


def test_documented_examples_match_their_ids() -> None:
    assert examples.PLAN["id"] == examples.PLAN_ID
    assert examples.DATASET["id"] == examples.DATASET_ID == examples.PLAN["dataset_id"]


@pytest.mark.parametrize(
    ("page", "assets"),
    [
        (
            "/docs",
            [
                "/static/docs/swagger-ui-bundle.js",
                "/static/docs/swagger-ui.css",
                "/static/docs/favicon.png",
            ],
        ),
        ("/redoc", ["/static/docs/redoc.standalone.js", "/static/docs/favicon.png"]),
    ],
)
def test_docs_pages_load_only_local_assets(
    module_api: TestClient, page: str, assets: list[str]
) -> None:
    html = module_api.get(page).text
    links = re.findall(r'(?:src|href)="([^"]+)"', html)
    assert sorted(set(links)) == sorted(assets)
    assert "fonts.googleapis" not in html
    assert re.search(r"https?://", html) is None
    for asset in assets:
        response = module_api.get(asset)
        assert response.status_code == 200, asset
        assert len(response.content) > 500, asset
    if page == "/docs":
        assert '"validatorUrl": null' in html  # no badge fetched from validator.swagger.io


def test_stream_parameters_read_the_same_in_every_operation(schema: dict[str, Any]) -> None:
    """The stream query is declared once (NOTE [Stream queries]): each of its parameters
    has one name, schema and description wherever it appears, and the plans' and runs'
    ``/indices`` take the same nine."""
    seen: dict[tuple[str, str], dict[str, Any]] = {}
    for _, path, op in operations(schema):
        if not path.endswith(("/indices", "/indices/summary", "/batches", "/batches/summary")):
            continue  # a weights epoch, say, is another parameter
        kind = "batches" if "/batches" in path else "digest" if path.endswith("/summary") else ""
        for param in op.get("parameters", []):
            if param["in"] != "query" or param["name"] not in STREAM_FIELDS:
                continue
            # Batches count offset and limit in batches; a summary digests its `space`.
            key = (param["name"], kind if param["name"] in ("offset", "limit", "space") else "")
            if param["name"] == "space" and kind == "batches":
                key = ("space", "")
            assert seen.setdefault(key, param) == param, (path, param["name"])
    for path in ("/v1/plans/{plan_id}/indices", "/v1/runs/{run_id}/indices"):
        names = [
            p["name"] for p in schema["paths"][path]["get"]["parameters"] if p["in"] == "query"
        ]
        assert names == list(STREAM_FIELDS), path


STREAM_FIELDS = (
    "epoch",
    "rank",
    "world_size",
    "offset",
    "limit",
    "space",
    "start",
    "pad",
    "drop_last",
)
