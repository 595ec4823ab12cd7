"""The application factory and the ``sampleplan`` command."""

from __future__ import annotations

import gc
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

import anyio
from fastapi import Depends, FastAPI, Security
from fastapi.routing import APIRoute
from fastapi.security import HTTPBearer

from sampleplan import __version__
from sampleplan.core import exact
from sampleplan.service.api.auth import BearerAuthMiddleware, load_api_tokens
from sampleplan.service.api.docs import install_offline_docs
from sampleplan.service.api.fastlane import FastLane, get_route
from sampleplan.service.api.floor import Floor, FloorAnswer, FloorFirst
from sampleplan.service.api.limits import BodySizeLimitMiddleware, RequestTimeoutMiddleware
from sampleplan.service.api.observability import (
    ObservabilityMiddleware,
    RequestRecorder,
    RouteTemplates,
)
from sampleplan.service.api.openapi import install_problem_openapi, operation_id
from sampleplan.service.api.page_threads import page_limiter
from sampleplan.service.api.problems import install_problem_handlers
from sampleplan.service.api.queries import check_query
from sampleplan.service.api.routes import batches, datasets, health, metrics, plans, runs, sample
from sampleplan.service.api.schemas import Problem
from sampleplan.service.api.update_lane import UpdateLane
from sampleplan.service.catalog import Catalog
from sampleplan.service.config import Settings, get_settings
from sampleplan.service.logs import configure_logging
from sampleplan.service.metrics import ServiceMetrics
from sampleplan.service.run_catalog import RunCatalog
from sampleplan.service.storage import PlanStore, RunStore
from sampleplan.service.storage.store import DatabaseTimeouts

DESCRIPTION = """\
Sampling plans for imbalanced datasets: class counts, per-sample weights and seeded index
streams drawn exactly as `torch.utils.data.WeightedRandomSampler` draws them, sharded like
`DistributedSampler`, resumable at any offset. Errors are `application/problem+json`.
"""


#: The API docs' sections, in this order (the routers are included in another: probes first).
OPENAPI_TAGS = [
    {"name": "datasets", "description": "Labels uploaded once, counted, and referred to by id."},
    {"name": "plans", "description": "Weights and seeded index streams, sharded and paged."},
    {"name": "batches", "description": "A batching plan's batches, with their class quotas."},
    {"name": "runs", "description": "Weights the training job updates between epochs."},
    {"name": "sample", "description": "One call from labels to counts, weights and indices."},
    {"name": "health", "description": "Liveness, readiness and Prometheus metrics."},
]


# A keyword FastAPI has had since its native OpenTelemetry support; older releases keep
# unknown keywords in ``app.extra``, harmlessly.
_NO_TELEMETRY: dict[str, Any] = {"telemetry": {"tracing": False, "metrics": False, "logs": False}}


def limits_description(settings: Settings, *, auth: bool) -> str:
    """The configured limits, as a section of the API docs."""
    rows = [
        ("request body", f"{settings.max_body_bytes} bytes", "413", "SAMPLEPLAN_MAX_BODY_BYTES"),
        ("labels per dataset", str(settings.max_labels), "413", "SAMPLEPLAN_MAX_LABELS"),
        ("values per response", str(settings.max_page), "422", "SAMPLEPLAN_MAX_PAGE"),
        ("draws per epoch", str(settings.max_num_samples), "422", "SAMPLEPLAN_MAX_NUM_SAMPLES"),
        (
            "time to the response's start",
            f"{settings.request_timeout_seconds:g} s",
            "504",
            "SAMPLEPLAN_REQUEST_TIMEOUT_SECONDS",
        ),
        (
            "one database statement",
            f"{settings.database_statement_timeout_seconds:g} s",
            "503",
            "SAMPLEPLAN_DATABASE_STATEMENT_TIMEOUT_SECONDS",
        ),
        (
            "classes a plan's answer lists",
            str(settings.plan_classes_inline),
            "the rest by `GET /v1/plans/{plan_id}/classes`",
            "SAMPLEPLAN_PLAN_CLASSES_INLINE",
        ),
    ]
    arrays = (
        "\n\nArrays (`/weights`, `/indices`) answer `application/json` by default, and "
        "`application/octet-stream` (raw little-endian values) or `application/x-npy` on "
        "request through `Accept`; binary answers carry `X-Sampleplan-Dtype` and "
        "`X-Sampleplan-Length`.\n"
    )
    table = "\n".join(f"| {what} | {value} | {code} | `{env}` |" for what, value, code, env in rows)
    access = (
        "Every `/v1` request needs `Authorization: Bearer <token>` (401 without); "
        "`/healthz`, `/readyz`, `/metrics` and these docs stay open."
        if auth
        else "No token is required (`SAMPLEPLAN_API_TOKENS` is not set)."
    )
    return (
        "\n\n## Limits of this deployment\n\n| limit | value | beyond it | set by |\n"
        f"| --- | --- | --- | --- |\n{table}\n{arrays}\n## Access\n\n{access}\n"
    )


def database_timeouts(settings: Settings) -> DatabaseTimeouts:
    """The settings' bounds on waiting for the database (NOTE [Database timeouts])."""
    return DatabaseTimeouts(
        connect=settings.database_connect_timeout_seconds,
        ping=settings.database_ping_timeout_seconds,
        statement=settings.database_statement_timeout_seconds,
        pool=settings.database_pool_timeout_seconds,
    )


def create_app(
    settings: Settings | None = None, *, freeze_gc: bool = False, fast_lane: bool = True
) -> FastAPI:
    """Build the app. The lifespan opens the store; nothing is opened at import time.

    ``freeze_gc`` (what ``sampleplan serve`` uses) hides everything alive after start-up
    from the garbage collector; see NOTE [Garbage collection pauses]. ``fast_lane=False``
    leaves every request to FastAPI's routing (tests compare the two; NOTE [Fast lane]).
    """
    settings = settings or get_settings()
    tokens = load_api_tokens(settings)
    configure_logging(settings.log_format, settings.log_level)
    service_metrics = ServiceMetrics()

    # Run pages at the floor, once the lifespan has made the run catalog.
    run_pages = runs.RunPagesAtHand()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        store = PlanStore.open(settings.database_url, database_timeouts(settings))
        exact.configure_parallelism(
            threads=settings.exact_threads, min_draws=settings.exact_parallel_min_draws
        )
        await anyio.to_thread.run_sync(exact.warm_up)
        app.state.settings = settings
        app.state.catalog = Catalog(store, settings, service_metrics)
        app.state.runs = RunCatalog(RunStore(store.engine), app.state.catalog)
        app.state.page_limiter = page_limiter(settings.page_threads)
        if freeze_gc:
            gc.collect()
            gc.freeze()
        floor = app.floor if isinstance(app, FloorFirst) else None
        if floor is not None:
            floor.catalog = app.state.catalog
            run_pages.runs = app.state.runs
            if floor.updates is not None:
                floor.updates.runs = app.state.runs
        try:
            yield
        finally:
            if floor is not None:
                floor.catalog = None
                run_pages.runs = None
                if floor.updates is not None:
                    floor.updates.runs = None
            store.close()

    app = FloorFirst(
        title="sampleplan",
        version=__version__,
        description=DESCRIPTION + limits_description(settings, auth=bool(tokens)),
        lifespan=lifespan,
        openapi_tags=OPENAPI_TAGS,
        generate_unique_id_function=operation_id,
        # NOTE [Query parameters]: unknown and repeated query parameters are a 422.
        dependencies=[Depends(check_query)],
        # Served from local files by install_offline_docs: the defaults load from CDNs.
        docs_url=None,
        redoc_url=None,
        # FastAPI's native OpenTelemetry looks for a configured provider on every request
        # (environment lookups: a tenth of a cached page's time). The service exports
        # Prometheus metrics of its own; SAMPLEPLAN_OPENTELEMETRY=true turns it back on.
        **({} if settings.opentelemetry else _NO_TELEMETRY),
    )
    app.state.metrics = service_metrics
    install_problem_handlers(app)
    install_offline_docs(app)
    # The document /docs shows, rewritten to say what the service answers.
    heads = datasets.HEAD_PATHS + plans.HEAD_PATHS + batches.HEAD_PATHS + runs.HEAD_PATHS
    install_problem_openapi(app, head_paths=heads)
    v1_extra: dict[str, Any] = {}
    if tokens:
        # Enforced by BearerAuthMiddleware; this only documents it (and gives /docs its
        # "Authorize" button): HTTPBearer(auto_error=False) never refuses anything.
        v1_extra = {
            "dependencies": [Security(HTTPBearer(auto_error=False))],
            "responses": {
                401: {
                    "model": Problem,
                    "description": "No valid bearer token.",
                    "headers": {
                        "WWW-Authenticate": {
                            "description": '`Bearer`, with `error="invalid_token"` for a '
                            "wrong token.",
                            "schema": {"type": "string"},
                        }
                    },
                }
            },
        }
    # Probes and scrapes first: the router tries routes in turn, and /healthz behind
    # every /v1 route spent 38% of its time being matched. No path of one overlaps the
    # other; OPENAPI_TAGS keeps the docs' order.
    app.include_router(health.router)
    app.include_router(metrics.router)
    for router in (datasets.router, plans.router, batches.router, runs.router, sample.router):
        app.include_router(router, **v1_extra)

    # add_middleware wraps what is there, so the last added runs first: observability
    # (request id, logs, metrics) sees every answer; auth refuses before the body limit
    # reads a byte; the timeout covers the handler and its reading of the body.
    # Innermost: index pages and /healthz skip FastAPI's routing and dependency solving,
    # and every middleware above still applies (NOTE [Fast lane] in service/api/fastlane.py).
    if fast_lane:
        for router, endpoint, answer in (
            (plans.router, plans.get_indices, plans.fast_indices),
            (health.router, health.healthz, health.fast_healthz),
        ):
            app.add_middleware(FastLane, route=get_route(router, endpoint), answer=answer)
    app.add_middleware(RequestTimeoutMiddleware, timeout_seconds=settings.request_timeout_seconds)
    app.add_middleware(BodySizeLimitMiddleware, max_body_bytes=settings.max_body_bytes)
    if tokens:
        app.add_middleware(BearerAuthMiddleware, tokens=tokens)
    recorder = RequestRecorder(service_metrics, RouteTemplates(app))
    app.add_middleware(ObservabilityMiddleware, metrics=service_metrics, recorder=recorder)
    if fast_lane and not settings.opentelemetry and Floor.serves(service_metrics):
        # Before all of it: pages at hand are answered ahead of the stack, which they would
        # cross untouched (NOTE [Serving at the floor] in service/api/floor.py). Not with
        # OpenTelemetry on: its spans cover every request, and FastAPI makes them; nor in
        # prometheus_client's multiprocess mode, whose values the floor cannot count.
        lanes: list[tuple[APIRoute, FloorAnswer]] = [
            (get_route(plans.router, plans.get_indices), plans.indices_at_hand),
            (get_route(batches.router, batches.get_batches), batches.batches_at_hand),
            (get_route(runs.router, runs.get_run_indices), run_pages),
        ]
        # Small JSON run updates too (NOTE [Updates at the floor] in update_lane.py).
        updates = UpdateLane(
            app.beneath_the_floor,
            route=get_route(runs.router, runs.post_update, method="POST"),
            recorder=recorder,
            tokens=tokens,
            max_body_bytes=settings.max_body_bytes,
            timeout_seconds=settings.request_timeout_seconds,
            handlers=app.exception_handlers,
        )
        app.floor = Floor(lanes=lanes, recorder=recorder, tokens=tokens, updates=updates)
    return app


# NOTE [Garbage collection pauses]
#     torch, numba and the app leave some 300 000 objects alive after start-up, and a
#     full collection walks all of them: 0.5 s on the 2-core machine the load targets
#     are measured on, a stall of every request in flight, and the whole p99 of a cached
#     page. gc.freeze() after start-up moves them to a generation the collector never
#     scans, so collections under load walk only what requests allocate. Only the
#     served process does it: tests build many apps in one process, and frozen objects
#     are never freed.


def serve_app() -> FastAPI:
    """The app ``sampleplan serve`` runs (in each worker): settings from the environment."""
    return create_app(freeze_gc=True)


def cli(argv: Sequence[str] | None = None) -> None:
    """The ``sampleplan`` command; it lives in :mod:`sampleplan.cli` (which imports lazily)."""
    from sampleplan.cli import main

    main(argv)


if __name__ == "__main__":  # pragma: no cover
    cli()
