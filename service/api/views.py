"""Turning catalog objects into response bodies."""

from __future__ import annotations

from typing import Any

from service.api.schemas import ClassRow, DatasetOut, PlanOut
from service.catalog import DatasetInfo, Plan
from service.core.stats import class_table


def dataset_out(info: DatasetInfo) -> DatasetOut:
    return DatasetOut(
        id=info.id,
        size=info.size,
        label_type="int" if info.label_kind == "int" else "str",
        num_classes=len(info.classes),
        classes=info.classes,
        counts=info.counts,
    )


def class_rows(plan: Plan) -> list[ClassRow]:
    return [
        ClassRow.model_validate(
            {
                "class": plan.classes[row.code],
                "count": row.count,
                "class_weight": row.class_weight,
                "expected_share": row.expected_share,
                "expected_draws": row.expected_draws,
            }
        )
        for row in class_table(plan.prepared)
    ]


def plan_out(plan: Plan) -> PlanOut:
    return PlanOut(
        id=plan.id,
        dataset_id=plan.dataset_id,
        config=plan.config,
        population_size=plan.prepared.population_size,
        num_samples=plan.prepared.num_samples,
        classes=class_rows(plan),
        versions=plan.versions,
    )


def stream_meta(plan: Plan, **fields: Any) -> dict[str, Any]:
    return {"plan_id": plan.id, **fields}
