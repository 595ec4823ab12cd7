"""The plan store: datasets and plans in SQLite (default) or PostgreSQL, via SQLAlchemy 2.

Records here are plain bytes and JSON; turning them into arrays is the caller's job, so
the store knows nothing of the sampling core. Runs live in their own tables
(:mod:`sampleplan.service.storage.runs`), in the same database.
"""

from sampleplan.service.storage.runs import (
    EpochRecord,
    RunBatch,
    RunReads,
    RunRecord,
    RunStore,
    RunTransaction,
    UpdateRecord,
)
from sampleplan.service.storage.store import (
    DatasetRecord,
    LengthsRecord,
    MixturePlanRecord,
    PlanRecord,
    PlanStore,
)

__all__ = [
    "DatasetRecord",
    "EpochRecord",
    "LengthsRecord",
    "MixturePlanRecord",
    "PlanRecord",
    "PlanStore",
    "RunBatch",
    "RunReads",
    "RunRecord",
    "RunStore",
    "RunTransaction",
    "UpdateRecord",
]
