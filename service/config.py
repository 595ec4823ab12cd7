"""Service settings, read from ``SAMPLEPLAN_*`` environment variables."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Every knob of the service. ``SAMPLEPLAN_DATABASE_URL`` sets ``database_url``, etc."""

    model_config = SettingsConfigDict(env_prefix="SAMPLEPLAN_", extra="ignore")

    database_url: str = Field(
        default="sqlite:///data/sampleplan.sqlite3",
        description="SQLAlchemy URL. SQLite (a local file) by default; "
        "postgresql://… for replicas.",
    )
    database_connect_timeout_seconds: int = Field(
        default=2,
        ge=1,
        description="PostgreSQL: a new connection not established by then fails (libpq's "
        "connect_timeout, whole seconds, at least 2; a URL's own connect_timeout wins).",
    )
    database_ping_timeout_seconds: float = Field(
        default=2.0,
        gt=0,
        description="PostgreSQL: a pooled connection that does not answer a ping (SELECT 1) "
        "by then is dropped, with the rest of the pool, before a request uses it.",
    )
    database_statement_timeout_seconds: float = Field(
        default=30.0,
        gt=0,
        description="Longest one statement may run or wait for a lock: PostgreSQL's "
        "statement_timeout and lock_timeout, SQLite's busy timeout (503 beyond); a PostgreSQL "
        "statement or commit with no answer at all is cut off a second later.",
    )
    database_pool_timeout_seconds: float = Field(
        default=5.0,
        gt=0,
        description="Longest a request waits for a free pooled connection (503 beyond).",
    )
    max_labels: int = Field(
        default=100_000_000, gt=0, description="Most labels one dataset may have (413 beyond)."
    )
    max_num_samples: int = Field(
        default=100_000_000,
        gt=0,
        description="Most draws per epoch for algorithm 'torch', which materialises the epoch "
        "(422 beyond).",
    )
    max_page: int = Field(
        default=10_000_000,
        gt=0,
        description="Most indices or weights in one response (422 beyond).",
    )
    plan_classes_inline: int = Field(
        default=10_000,
        ge=1,
        description="Classes a plan's answer lists in full; past this its `classes` holds "
        "the first this many, `classes_page` says how many there are, and "
        "GET /v1/plans/{plan_id}/classes pages through them (the report lists as many).",
    )
    plan_cache_size: int = Field(
        default=16, ge=0, description="Prepared plans kept in memory per replica."
    )
    epoch_cache_bytes: int = Field(
        default=2**30,
        ge=0,
        description="Bytes of drawn 'torch' epochs kept per replica, LRU (0: keep none).",
    )
    exact_threads: int = Field(
        default=2,
        ge=1,
        le=64,
        description="Threads one large 'torch' page may be split over (1: never split). "
        "Helpers are shared by the whole replica and used only when idle.",
    )
    exact_parallel_min_draws: int = Field(
        default=1 << 20,
        ge=2,
        description="Smallest 'torch' page (in draws) split over exact_threads threads.",
    )
    page_threads: int | None = Field(
        default=None,
        ge=1,
        le=1024,
        description="Worker threads that may read, draw and cut index pages at once (default: "
        "twice the CPUs the process may use); requests beyond wait without a thread. See "
        "NOTE [Page threads] in service/api/page_threads.py.",
    )
    run_keep_epochs: int | None = Field(
        default=None,
        ge=1,
        description="Frozen epochs of a run kept readable, the latest first (default: all). "
        "Older frozen epochs and their updates are deleted once a keyframe (a frozen epoch "
        "stored whole, every 64th) falls out of the window, so between N and N + 63 are kept; "
        "reading an epoch before them is a 410. See docs/operations/runs-storage.md.",
    )
    # -- operations (auth, limits, logs) ---------------------------------------------------
    api_tokens: SecretStr | None = Field(
        default=None,
        description="Comma-separated bearer tokens; when any is set, /v1 needs one (401 without).",
    )
    api_tokens_file: Path | None = Field(
        default=None,
        description="A file of bearer tokens, one per line ('#' comments); joins api_tokens.",
    )
    max_body_bytes: int = Field(
        default=2**30,
        gt=0,
        description="Largest request body in bytes, uploads included (413 by Content-Length, "
        "or while a chunked body is read, before it is read whole).",
    )
    request_timeout_seconds: float = Field(
        default=60.0,
        gt=0,
        description="A request whose response has not started by then gets a 504.",
    )
    workers: int = Field(
        default=1,
        ge=1,
        description="Worker processes of `sampleplan serve` (its --workers wins). Each has "
        "its own epoch cache, single flight and metrics.",
    )
    event_loop: Literal["asyncio", "uvloop"] = Field(
        default="asyncio",
        description="The event loop of `sampleplan serve` (its --loop wins): 'asyncio', the "
        "standard library's, answers requests in the order they came; 'uvloop' (installed "
        "with `pip install uvloop`) gave the same throughput with a p99 five to ten times "
        "longer at 64 connections (see docs/operations/serving-under-load.md).",
    )
    opentelemetry: bool = Field(
        default=False,
        description="FastAPI's native OpenTelemetry (spans, metrics, logs to a provider "
        "configured in the process); off, it costs nothing per request.",
    )
    log_format: Literal["auto", "json", "text"] = Field(
        default="auto",
        description="Log lines to stderr: JSON objects, or plain text; 'auto' writes text to "
        "a terminal and JSON anywhere else (a file, a pipe, a log collector).",
    )
    log_level: Literal["debug", "info", "warning", "error"] = Field(
        default="info", description="Least severe log level written."
    )

    @field_validator("log_format", "log_level", "event_loop", mode="before")
    @classmethod
    def _lower_case(cls, value: object) -> object:
        # SAMPLEPLAN_LOG_LEVEL=INFO is as good as info.
        return value.lower() if isinstance(value, str) else value


@lru_cache
def get_settings() -> Settings:
    """The process's settings, read once. Tests pass their own to ``create_app``."""
    return Settings()
