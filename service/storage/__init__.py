"""The plan store: datasets and plans in SQLite (default) or PostgreSQL, via SQLAlchemy 2.

Records here are plain bytes and JSON; turning them into arrays is the caller's job, so
the store knows nothing of the sampling core.
"""

from service.storage.store import DatasetRecord, PlanRecord, PlanStore

__all__ = ["DatasetRecord", "PlanRecord", "PlanStore"]
