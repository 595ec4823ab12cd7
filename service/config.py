"""Service settings, read from ``SAMPLEPLAN_*`` environment variables."""

from __future__ import annotations

from functools import lru_cache

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Every knob of the service. ``SAMPLEPLAN_DATABASE_URL`` sets ``database_url``, etc."""

    model_config = SettingsConfigDict(env_prefix="SAMPLEPLAN_", extra="ignore")

    database_url: str = Field(
        default="sqlite:///data/sampleplan.sqlite3",
        description="SQLAlchemy URL. SQLite (a local file) by default; postgresql://… for replicas.",
    )
    max_labels: int = Field(
        default=100_000_000, gt=0, description="Most labels one dataset may have (413 beyond)."
    )
    max_num_samples: int = Field(
        default=100_000_000,
        gt=0,
        description="Most draws per epoch for algorithm 'torch', which materialises the epoch (422 beyond).",
    )
    max_page: int = Field(
        default=10_000_000, gt=0, description="Most indices or weights in one response (422 beyond)."
    )
    plan_cache_size: int = Field(
        default=16, ge=0, description="Prepared plans kept in memory per replica."
    )
    max_upload_bytes: int = Field(
        default=2**30,
        ge=0,
        description="Largest request body in bytes (413 beyond: by Content-Length, or while read).",
    )
    epoch_cache_bytes: int = Field(
        default=2**30,
        ge=0,
        description="Bytes of drawn 'torch' epochs kept per replica, LRU (0: keep none).",
    )


@lru_cache
def get_settings() -> Settings:
    """The process's settings, read once. Tests pass their own to ``create_app``."""
    return Settings()
