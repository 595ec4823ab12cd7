"""Turning catalog objects into response bodies."""

from __future__ import annotations

from sampleplan.core.stats import PlanStats, plan_statistics
from sampleplan.service.api.schemas import (
    ClassRow,
    DatasetOut,
    EpochCoverage,
    LabelSetSummary,
    PlanOut,
)
from sampleplan.service.catalog import DatasetInfo, Plan


def dataset_out(info: DatasetInfo) -> DatasetOut:
    return DatasetOut(
        id=info.id,
        size=info.size,
        label_type="int" if info.label_kind == "int" else "str",
        num_classes=len(info.classes),
        classes=info.classes,
        counts=info.counts,
        multi_label=info.multi_label,
        unlabelled=info.unlabelled,
        label_cardinality=info.label_cardinality,
    )


def class_rows(plan: Plan, stats: PlanStats | None = None) -> list[ClassRow]:
    stats = stats or plan_statistics(plan.prepared)
    return rows_of(plan, stats)


def rows_of(plan: Plan, stats: PlanStats) -> list[ClassRow]:
    return [
        ClassRow.model_validate(
            {
                "class": plan.classes[row.code],
                "count": row.count,
                "class_weight": row.class_weight,
                "data_share": row.data_share,
                "expected_share": row.expected_share,
                "expected_draws": row.expected_draws,
                "expected_distinct_samples": row.expected_distinct_samples,
                "expected_coverage": row.expected_coverage,
                "mean_repeats_per_drawn_sample": row.mean_repeats_per_drawn_sample,
            }
        )
        for row in stats.classes
    ]


def plan_out(plan: Plan, epoch: int = 0) -> PlanOut:
    """The plan as epoch ``epoch`` sees it (its weights, length and class table)."""
    prepared = plan.prepared.at_epoch(epoch)
    stats = plan_statistics(prepared)
    return PlanOut(
        id=plan.id,
        dataset_id=plan.dataset_id,
        config=plan.config,
        epoch=epoch,
        population_size=prepared.population_size,
        num_samples=prepared.num_samples,
        classes=rows_of(plan, stats),
        epoch_coverage=EpochCoverage(
            expected_distinct_samples=stats.expected_distinct_samples,
            expected_coverage=stats.expected_coverage,
            mean_repeats_per_drawn_sample=stats.mean_repeats_per_drawn_sample,
            exact=stats.exact,
        ),
        label_sets=None
        if stats.label_sets is None
        else LabelSetSummary(
            unlabelled=stats.label_sets.unlabelled,
            label_cardinality=stats.label_sets.mean_cardinality,
            expected_unlabelled_draws=stats.label_sets.expected_unlabelled_draws,
            expected_label_cardinality=stats.label_sets.expected_mean_cardinality,
        ),
        versions=plan.versions,
    )
