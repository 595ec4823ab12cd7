"""Make ``/openapi.json`` say what the service really answers, in a form generators read.

FastAPI documents every response under the route's media type (``application/json``)
and adds its own 422 schema (``HTTPValidationError``); this service answers every error
as ``application/problem+json`` in the :class:`~sampleplan.service.api.schemas.Problem`
shape (the problem handlers replace FastAPI's 422 body), and its middlewares add answers
no route declares (413 for a large body, 504 for a timeout, 401 without a token). The
schema is rewritten once, after FastAPI builds it, so that clients and fuzzers
(schemathesis, in the tests) can hold the service to it: every error response is
problem+json with the ``Problem`` schema and an example, and ``HEAD`` routes are
operations of their own.

Operation ids are the handlers' names (:func:`operation_id`): client generators name
their functions after them (tests/api/test_client_generators.py generates two clients).
"""

from __future__ import annotations

import copy
from collections.abc import Iterable
from typing import Any, get_args

from fastapi import FastAPI
from fastapi.routing import APIRoute
from pydantic import BaseModel

from sampleplan.core.algorithms import AlgorithmName
from sampleplan.core.labelsets import LabelReduce
from sampleplan.core.streams import Space
from sampleplan.core.weighting import Strategy
from sampleplan.service import errors
from sampleplan.service.api.problems import PROBLEM_JSON, problem_type
from sampleplan.service.api.schemas import DatasetCreate, Problem, RunUpdateIn

_PROBLEM_REF = {"$ref": "#/components/schemas/Problem"}

#: Models that parts of the document written here or by hand (``openapi_extra``) refer to
#: by name, which FastAPI does not add: the problems the middlewares answer, and the JSON
#: bodies of operations that read their body themselves (``POST /v1/datasets``,
#: ``POST /v1/runs/{run_id}/updates``).
_REFERRED_BY_HAND: tuple[type[BaseModel], ...] = (Problem, DatasetCreate, RunUpdateIn)

#: Enumerations that fields and parameters of many operations share, each named once in
#: the document's components: a generated client then has one ``Space``, not one per
#: parameter and model (``GetIndicesSpace``, ``IndicesOutSpace``...).
NAMED_ENUMS: dict[str, tuple[str, ...]] = {
    "Space": get_args(Space),
    "Strategy": get_args(Strategy),
    "Algorithm": get_args(AlgorithmName),
    "LabelReduce": get_args(LabelReduce),
}

#: The error each status stands for in examples, and an example detail.
_PROBLEM_EXAMPLES: dict[str, tuple[type[errors.SamplingError], str]] = {
    "400": (errors.MalformedRequest, "the request body is not valid JSON: EOF while parsing"),
    "401": (errors.Unauthorized, "this service needs a bearer token"),
    "404": (errors.NotFound, "no such endpoint"),
    "406": (errors.NotAcceptable, "cannot answer with the requested media type"),
    "413": (
        errors.PayloadTooLarge,
        "the dataset has 200000000 labels; this service takes at most 100000000",
    ),
    "410": (
        errors.EpochPruned,
        "epoch 3 of run 'example-run' is no longer kept: the service keeps the latest "
        "frozen epochs only (run_keep_epochs), epoch 64 and later",
    ),
    "415": (errors.UnsupportedMediaType, "unsupported Content-Type"),
    "504": (errors.RequestTimeout, "no response within 60 s"),
    "422": (errors.InvalidInput, "seed: Input should be greater than or equal to 0"),
    "503": (errors.StorageUnavailable, "the database is unreachable"),
}

# Answers any operation can give, whatever its route declares.
_COMMON_ERRORS = {
    "503": "The database is unreachable.",
    "504": "No response within the request timeout (SAMPLEPLAN_REQUEST_TIMEOUT_SECONDS).",
}
# Answers any operation with a request body can give.
_BODY_ERRORS = {
    "400": "The body is not valid JSON.",
    "413": "The body is larger than SAMPLEPLAN_MAX_BODY_BYTES, or holds too many labels.",
    "415": "The body's Content-Type is not one the operation reads.",
    "422": "The body is well-formed but invalid; `detail` says what to fix.",
}


def operation_id(route: APIRoute) -> str:
    """An operation's id: its route's name, the handler's, as a method name would read.

    FastAPI's default appends the path and method (``create_plan_v1_plans_post``), and
    client generators name their functions after it. The app passes this as its
    ``generate_unique_id_function``; handler names are unique across the routers
    (plans' ``get_indices``, runs' ``get_run_indices``), and tests/api/test_openapi.py
    pins the list, since a generated client's method names are part of the API.
    """
    return route.name


def _problem(description: str) -> dict[str, Any]:
    return {"description": description, "content": {PROBLEM_JSON: {"schema": _PROBLEM_REF}}}


def problem_responses(schema: dict[str, Any], *, versioned_prefix: str = "/v1/") -> dict[str, Any]:
    """``schema`` with every error response documented as problem+json (in place)."""
    for path, operations in schema.get("paths", {}).items():
        for operation in operations.values():
            responses: dict[str, Any] = operation.setdefault("responses", {})
            if path.startswith(versioned_prefix):
                for code, description in _COMMON_ERRORS.items():
                    responses.setdefault(code, _problem(description))
                if "requestBody" in operation:
                    for code, description in _BODY_ERRORS.items():
                        responses.setdefault(code, _problem(description))
            if operation.get("parameters"):
                responses.setdefault("422", _problem("A parameter is invalid."))
            for code, response in responses.items():
                if code[0] not in "45":
                    continue
                # Errors are problem+json whatever the route's own media type (the
                # report's is text/html): one media type, one schema, one example, the
                # route's own if it gave one.
                given = response.get("content", {}).values()
                example = next((m["example"] for m in given if "example" in m), None)
                if example is None:
                    example = problem_example(code, path, response.get("description", ""))
                response["content"] = {PROBLEM_JSON: {"schema": _PROBLEM_REF, "example": example}}
                if code == "422" and response.get("description") == "Validation Error":
                    response["description"] = "The request's parameters or body are invalid."
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    for model in _REFERRED_BY_HAND:
        model_schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
        for name, definition in model_schema.pop("$defs", {}).items():
            components.setdefault(name, definition)
        components.setdefault(model.__name__, model_schema)
    # FastAPI's own 422 shapes are never sent: validation errors are problems too.
    for unused in ("HTTPValidationError", "ValidationError"):
        components.pop(unused, None)
    return schema


def problem_example(status: str, path: str, description: str) -> dict[str, Any]:
    """An example problem body for a ``status`` answer of the operation at ``path``."""
    error, detail = _PROBLEM_EXAMPLES.get(
        status, (errors.SamplePlanServiceError, "the request failed")
    )
    if status == "404" and ("dataset" in description.lower() or path.startswith("/v1/datasets")):
        error, detail = errors.DatasetNotFound, "no dataset has id '0123abcd'"
    elif status == "404" and path.startswith("/v1/plans"):
        error, detail = errors.PlanNotFound, "no plan has id '0123abcd'"
    return {
        "type": problem_type(error.type_slug),
        "title": error.title,
        "status": int(status),
        "detail": detail,
        "instance": path,
    }


def head_operations(schema: dict[str, Any], paths: Iterable[str]) -> dict[str, Any]:
    """Document ``HEAD`` on ``paths`` as their ``GET`` without a body (in place).

    The HEAD routes are kept out of FastAPI's schema, which would list each twice under
    one operation id; here each gets an operation of its own, GET's answers with their
    headers and no content.
    """
    for path in paths:
        operations = schema.get("paths", {}).get(path)
        if not operations or "get" not in operations or "head" in operations:
            continue
        get = operations["get"]
        head = {
            key: copy.deepcopy(value)
            for key, value in get.items()
            if key not in ("responses", "operationId", "summary", "description")
        }
        head["operationId"] = _head_id(get.get("operationId", path))
        head["summary"] = f"Headers of: {get.get('summary', path)}"
        head["description"] = (
            "The headers `GET` would answer (`X-Sampleplan-Length`, `X-Sampleplan-Dtype`, "
            "`Content-Length` for binary types), with no body: size a download first."
        )
        head["responses"] = {
            code: {k: copy.deepcopy(v) for k, v in response.items() if k != "content"}
            for code, response in get.get("responses", {}).items()
        }
        operations["head"] = head
    return schema


def _head_id(get_id: str) -> str:
    """``get_indices`` -> ``head_indices``: the HEAD twin of a GET operation."""
    return "head_" + get_id.removeprefix("get_")


def named_enums(schema: dict[str, Any]) -> dict[str, Any]:
    """Every string enumeration of :data:`NAMED_ENUMS` as a reference to it (in place).

    Pydantic and FastAPI write a ``Literal`` out where it is used; this puts it in the
    components once and refers to it, keeping what the place said beside it (its
    default, description or examples).
    """
    names = {values: name for name, values in NAMED_ENUMS.items()}

    def named(node: Any) -> Any:
        if isinstance(node, list):
            return [named(item) for item in node]
        if not isinstance(node, dict):
            return node
        name = names.get(tuple(node.get("enum", ())))
        if name is not None and node.get("type") == "string":
            kept = {k: v for k, v in node.items() if k not in ("type", "enum", "title")}
            return {"$ref": f"#/components/schemas/{name}", **kept}
        return {
            key: value if key in ("example", "examples") else named(value)
            for key, value in node.items()
        }

    schema["paths"] = named(schema.get("paths", {}))
    components = schema.setdefault("components", {})
    components["schemas"] = {
        # An enumeration named so already (a Python Enum) is not made a reference to itself.
        name: definition if name in NAMED_ENUMS else named(definition)
        for name, definition in components.get("schemas", {}).items()
    }
    for name, values in NAMED_ENUMS.items():
        components["schemas"].setdefault(
            name, {"type": "string", "enum": list(values), "title": name}
        )
    components["schemas"] = dict(sorted(components["schemas"].items()))
    return schema


def install_problem_openapi(app: FastAPI, *, head_paths: Iterable[str] = ()) -> None:
    """Serve the rewritten schema at ``/openapi.json`` (built once, on first request);
    ``head_paths`` answer HEAD as well as GET."""

    build = app.openapi
    heads = tuple(head_paths)

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = named_enums(head_operations(problem_responses(build()), heads))
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
