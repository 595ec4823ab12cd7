"""The application factory and the ``sampleplan`` command."""

from __future__ import annotations

import argparse
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager

import anyio
from fastapi import FastAPI

from service import __version__
from service.api.docs import install_offline_docs
from service.api.limits import RequestBodyLimit
from service.api.problems import install_problem_handlers
from service.api.routes import datasets, health, plans, sample
from service.catalog import Catalog
from service.core import exact
from service.config import Settings, get_settings
from service.storage import PlanStore

DESCRIPTION = """\
Sampling plans for imbalanced datasets: class counts, per-sample weights and seeded index
streams drawn exactly as `torch.utils.data.WeightedRandomSampler` draws them, sharded like
`DistributedSampler`, resumable at any offset. Errors are `application/problem+json`.
"""


def limits_description(settings: Settings) -> str:
    """The caps this instance enforces, for the API docs."""
    return f"""
## Limits of this instance

| setting | value | beyond it |
| --- | --- | --- |
| `max_upload_bytes` (largest request body) | {settings.max_upload_bytes} bytes | 413 |
| `max_labels` (labels per dataset) | {settings.max_labels} | 413 |
| `max_page` (values per array response) | {settings.max_page} | 422: page with `offset`, `limit` |
| `max_num_samples` (draws per epoch, algorithm `torch`) | {settings.max_num_samples} | 422 |

Arrays (`/weights`, `/indices`) answer `application/json` by default, and
`application/octet-stream` (raw little-endian values) or `application/x-npy` on request
through `Accept`; binary answers carry `X-Sampleplan-Dtype` and `X-Sampleplan-Length`.
"""


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the app. The lifespan opens the store; nothing is opened at import time."""
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        store = PlanStore.open(settings.database_url)
        await anyio.to_thread.run_sync(exact.warm_up)
        app.state.settings = settings
        app.state.catalog = Catalog(store, settings)
        try:
            yield
        finally:
            store.close()

    app = FastAPI(
        title="sampleplan",
        version=__version__,
        description=DESCRIPTION + limits_description(settings),
        lifespan=lifespan,
        # Served from local files by install_offline_docs: the defaults load from CDNs.
        docs_url=None,
        redoc_url=None,
    )
    install_problem_handlers(app)
    install_offline_docs(app)
    app.add_middleware(RequestBodyLimit, max_bytes=settings.max_upload_bytes)
    for router in (datasets.router, plans.router, sample.router, health.router):
        app.include_router(router)
    return app


def cli(argv: Sequence[str] | None = None) -> None:
    """``sampleplan serve [--host H] [--port P]``; ``plan`` and ``report`` live in service.cli."""
    from service.cli import add_commands, run_command

    parser = argparse.ArgumentParser(prog="sampleplan", description="sampleplan service")
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="run the HTTP service (uvicorn)")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--workers", type=int, default=1)
    serve.add_argument("--log-level", default="info")
    add_commands(commands)
    args = parser.parse_args(argv)
    if args.command == "serve":
        import uvicorn

        uvicorn.run(
            "service.main:create_app",
            factory=True,
            host=args.host,
            port=args.port,
            workers=args.workers,
            log_level=args.log_level,
        )
    else:
        raise SystemExit(run_command(args))


if __name__ == "__main__":  # pragma: no cover
    cli()
