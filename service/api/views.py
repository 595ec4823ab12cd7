"""Turning catalog objects into response bodies.

NOTE [Class tables by the page]
    A plan's class table has a row per class, and a plan may have a million classes: as
    a list of row objects that was 2 GB of memory, 242 MB of JSON and most of a minute
    to create, read or report. So the table is columns (:class:`~sampleplan.core.stats.PlanStats`:
    an array per field, computed in O(K) vectorised, the report's warning sorted in
    O(K log K)), rows are made only for the classes a response lists, and a response lists
    at most ``plan_classes_inline`` of them (10 000 by default): a plan past that answers
    its first rows, and ``classes_page`` (absent otherwise, so every smaller plan answers
    as it always has) gives the number of classes and the path of the next page of
    ``GET /v1/plans/{plan_id}/classes``. The catalog keeps the columns of recent
    plans and epochs (bounded by bytes), so paging through a table computes it once.
"""

from __future__ import annotations

import numpy as np

from sampleplan.core.mixtures import SourceShare
from sampleplan.core.stats import PlanStats, plan_statistics
from sampleplan.service.api.report import MAX_FLAGGED, REPEAT_WARNING
from sampleplan.service.api.schemas import (
    ClassesOut,
    ClassesPage,
    ClassRow,
    DatasetOut,
    EpochCoverage,
    LabelSetSummary,
    MixturePlanOut,
    PlanOut,
    SourceOut,
)
from sampleplan.service.catalog import DatasetInfo, Plan
from sampleplan.service.mixture_plans import MixturePlan


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
        total_tokens=info.total_tokens,
        labels_dataset_id=info.labels_dataset_id,
    )


def class_rows(plan: Plan, stats: PlanStats | None = None) -> list[ClassRow]:
    stats = stats or plan_statistics(plan.prepared)
    return rows_of(plan, stats)


def rows_of(
    plan: Plan, stats: PlanStats, start: int = 0, stop: int | None = None
) -> list[ClassRow]:
    """Rows ``start .. stop - 1`` of the class table (default: all of it)."""
    stop = stats.num_classes if stop is None else stop
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
        for row in stats.rows(start, stop)
    ]


#: Most rows one page of ``GET /v1/plans/{plan_id}/classes`` holds.
MAX_CLASSES_PAGE = 10_000


def classes_path(plan_id: str, epoch: int, offset: int, limit: int) -> str:
    """The path of a page of ``GET /v1/plans/{plan_id}/classes``."""
    query = f"offset={offset}&limit={limit}" + (f"&epoch={epoch}" if epoch else "")
    return f"/v1/plans/{plan_id}/classes?{query}"


def plan_out(
    plan: Plan, epoch: int = 0, *, stats: PlanStats | None = None, inline: int | None = None
) -> PlanOut:
    """The plan as epoch ``epoch`` sees it (its weights, length and class table).

    ``inline``: the most classes listed; a longer table is cut to its first ``inline``
    rows, and ``classes_page`` says where the rest is (NOTE [Class tables by the page]).
    """
    prepared = plan.prepared.at_epoch(epoch)
    stats = stats or plan_statistics(prepared)
    shown = stats.num_classes if inline is None else min(inline, stats.num_classes)
    page = None
    if shown < stats.num_classes:
        page = ClassesPage(
            total=stats.num_classes,
            offset=0,
            limit=shown,
            next=classes_path(plan.id, epoch, shown, min(shown, MAX_CLASSES_PAGE)),
        )
    return PlanOut(
        id=plan.id,
        dataset_id=plan.dataset_id,
        config=plan.config,
        epoch=epoch,
        population_size=prepared.population_size,
        num_samples=prepared.num_samples,
        classes=rows_of(plan, stats, 0, shown),
        classes_page=page,
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


def flagged_classes(
    plan: Plan, stats: PlanStats, threshold: float = REPEAT_WARNING, shown: int = MAX_FLAGGED
) -> tuple[list[ClassRow], int]:
    """The classes whose drawn samples repeat more than ``threshold`` times per epoch: the
    ``shown`` that repeat most (ties in class order), and how many there are in all.

    O(K log K) over the columns, whatever the number of classes; the report's warning.
    """
    repeats = stats.mean_repeats
    with np.errstate(invalid="ignore"):
        codes = np.flatnonzero(repeats > threshold)
    order = codes[np.argsort(-repeats[codes], kind="stable")][:shown]
    rows = [rows_of(plan, stats, int(c), int(c) + 1)[0] for c in order]
    return rows, int(codes.shape[0])


def classes_out(plan: Plan, epoch: int, stats: PlanStats, offset: int, limit: int) -> ClassesOut:
    """A page of the class table: rows ``offset .. offset + limit - 1``, in O(limit)."""
    total = stats.num_classes
    end = offset + limit
    return ClassesOut(
        plan_id=plan.id,
        epoch=epoch,
        total=total,
        offset=offset,
        limit=limit,
        classes=rows_of(plan, stats, offset, end),
        next=classes_path(plan.id, epoch, end, limit) if end < total else None,
    )


def mixture_plan_out(
    plan: MixturePlan, shares: list[SourceShare], epoch: int = 0
) -> MixturePlanOut:
    """The answer for a mixture plan: its config, each source and its shares of ``epoch``."""
    mixture = plan.mixture
    offsets = mixture.offsets.tolist()
    sample_shares = mixture.sample_proportions / float(mixture.sample_proportions.sum())
    sources = []
    for i, (config, source, share, given) in enumerate(
        zip(plan.config["sources"], mixture.sources, shares, plan.inputs, strict=True)
    ):
        sources.append(
            SourceOut(
                name=source.name,
                dataset_id=config.get("dataset_id"),
                plan_id=config.get("plan_id"),
                length=source.length,
                offset=int(offsets[i]),
                size=source.resolved_size,
                weight=config.get("weight"),
                order=config["order"],
                total_tokens=given.total_tokens,
                requested_share=share.requested,
                sample_share=float(sample_shares[i]),
                samples=share.samples,
                realised_share=share.realised,
                realised_token_share=share.tokens_realised,
                passes=share.passes,
                warning=share.warning,
            )
        )
    return MixturePlanOut(
        id=plan.id,
        config=plan.config,
        epoch=epoch,
        num_samples=plan.drawer.num_samples_at(epoch),
        size=mixture.size,
        sources=sources,
        warnings=[s.warning for s in shares if s.warning is not None],
        versions=plan.versions,
    )
