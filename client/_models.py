"""Value objects returned by the client."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Dataset:
    """A stored dataset: its id (content hash), size, sorted classes and their counts."""

    id: str
    size: int
    label_type: str
    classes: list[Any]
    counts: list[int]
    #: Label sets: samples carry several labels (``counts`` are samples carrying each).
    multi_label: bool = False
    unlabelled: int | None = None
    label_cardinality: float | None = None
    #: Datasets uploaded with token lengths: their sum, and the id of the labels alone.
    total_tokens: int | None = None
    labels_dataset_id: str | None = None

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Dataset:
        return cls(
            id=data["id"],
            size=data["size"],
            label_type=data["label_type"],
            classes=list(data["classes"]),
            counts=list(data["counts"]),
            multi_label=bool(data.get("multi_label", False)),
            unlabelled=data.get("unlabelled"),
            label_cardinality=data.get("label_cardinality"),
            total_tokens=data.get("total_tokens"),
            labels_dataset_id=data.get("labels_dataset_id"),
        )


@dataclass(frozen=True)
class ClassRow:
    """One class of a plan: count, weight per sample, and its expected share of draws."""

    label: Any
    count: int
    class_weight: float | None
    expected_share: float
    expected_draws: float
    extra: dict[str, Any] = field(default_factory=dict)


def _class_row(row: dict[str, Any]) -> ClassRow:
    known = {"class", "count", "class_weight", "expected_share", "expected_draws"}
    return ClassRow(
        label=row["class"],
        count=row["count"],
        class_weight=row.get("class_weight"),
        expected_share=row["expected_share"],
        expected_draws=row["expected_draws"],
        extra={k: v for k, v in row.items() if k not in known},
    )


@dataclass(frozen=True)
class ClassPage:
    """A page of a plan's class table (``SamplePlanClient.classes``)."""

    plan_id: str
    epoch: int
    total: int
    offset: int
    classes: list[ClassRow]
    #: The path of the next page; ``None`` after the last.
    next: str | None

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ClassPage:
        return cls(
            plan_id=data["plan_id"],
            epoch=int(data["epoch"]),
            total=int(data["total"]),
            offset=int(data["offset"]),
            classes=[_class_row(row) for row in data["classes"]],
            next=data.get("next"),
        )


@dataclass(frozen=True)
class SourceRow:
    """One source of a mixture plan, and its share of the epoch the plan answer describes.

    ``requested_share`` is what was asked for (of tokens under ``unit: "tokens"``, else of
    samples), ``realised_share`` the source's share of the epoch's draws,
    ``realised_token_share`` its share of the epoch's tokens (``None`` without token
    lengths), ``passes`` its draws over its length; ``warning`` is set past 4 passes.
    Indices of this source are ``offset .. offset + length - 1`` (``ConcatDataset``'s).
    """

    name: str
    dataset_id: str | None
    plan_id: str | None
    length: int
    offset: int
    size: int
    weight: float | None
    order: Any
    total_tokens: int | None
    requested_share: float
    sample_share: float
    samples: int
    realised_share: float
    realised_token_share: float | None
    passes: float
    warning: str | None

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> SourceRow:
        return cls(
            name=data["name"],
            dataset_id=data.get("dataset_id"),
            plan_id=data.get("plan_id"),
            length=int(data["length"]),
            offset=int(data["offset"]),
            size=int(data.get("size", data["length"])),
            weight=data.get("weight"),
            order=data.get("order"),
            total_tokens=data.get("total_tokens"),
            requested_share=float(data["requested_share"]),
            sample_share=float(data.get("sample_share", data["requested_share"])),
            samples=int(data["samples"]),
            realised_share=float(data["realised_share"]),
            realised_token_share=data.get("realised_token_share"),
            passes=float(data["passes"]),
            warning=data.get("warning"),
        )


@dataclass(frozen=True)
class Plan:
    """A stored plan: canonical config, population, per-class table and versions.

    A plan of more classes than the service lists inline carries only the first of
    them in ``classes`` (``classes_complete`` is then false, and ``num_classes`` says how
    many there are); ``SamplePlanClient.classes`` and ``all_classes`` page through the
    rest.

    A mixture plan (``is_mixture``; ``config`` holds ``sources`` and ``mixing``) has no
    one dataset (``dataset_id`` is ``None``) and no class table: ``sources`` holds each
    source's share of the epoch, ``population_size`` is the length of the sources'
    ``ConcatDataset`` (its indices are positions in it), ``num_samples`` the epoch's length
    and ``warnings`` the sources' warnings (more than 4 passes over a source).
    """

    id: str
    dataset_id: str | None
    config: dict[str, Any]
    population_size: int
    num_samples: int
    classes: list[ClassRow]
    versions: dict[str, str]
    raw: dict[str, Any] = field(repr=False, compare=False, default_factory=dict)
    #: Classes in the plan's table (``len(classes)`` unless the answer was summarised).
    num_classes: int = -1
    epoch: int = 0
    #: A mixture plan's sources (``None``: a plan over one dataset).
    sources: tuple[SourceRow, ...] | None = None
    warnings: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.num_classes < 0:
            object.__setattr__(self, "num_classes", len(self.classes))

    @property
    def classes_complete(self) -> bool:
        """Whether ``classes`` holds the whole class table."""
        return len(self.classes) == self.num_classes

    @property
    def is_mixture(self) -> bool:
        """Whether the plan mixes several sources (``config`` has ``sources``)."""
        return self.sources is not None

    @property
    def seed(self) -> int:
        return int(self.config["seed"])

    @property
    def replacement(self) -> bool:
        # A mixture draws its sources' elements in their orders: no replacement to speak of.
        return bool(self.config.get("replacement", False))

    @property
    def algorithm(self) -> str:
        """The stream's algorithm (a mixture's: its mixing algorithm)."""
        if self.is_mixture:
            return str(self.config["mixing"]["algorithm"])
        return str(self.config["algorithm"])

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Plan:
        if "sources" in data:
            return cls(
                id=data["id"],
                dataset_id=None,
                config=dict(data["config"]),
                population_size=int(data["size"]),
                num_samples=int(data["num_samples"]),
                classes=[],
                versions=dict(data["versions"]),
                raw=data,
                num_classes=0,
                epoch=int(data.get("epoch", 0)),
                sources=tuple(SourceRow.from_json(row) for row in data["sources"]),
                warnings=tuple(data.get("warnings") or ()),
            )
        rows = [_class_row(row) for row in data["classes"]]
        page = data.get("classes_page")
        return cls(
            id=data["id"],
            dataset_id=data["dataset_id"],
            config=dict(data["config"]),
            population_size=data["population_size"],
            num_samples=data["num_samples"],
            classes=rows,
            versions=dict(data["versions"]),
            raw=data,
            num_classes=len(rows) if page is None else int(page["total"]),
            epoch=int(data.get("epoch", 0)),
        )


@dataclass(frozen=True)
class Run:
    """A training run of a plan: its frozen epochs and how many updates it has taken."""

    id: str
    plan_id: str
    frozen_epochs: list[int]
    updates: int

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Run:
        return cls(
            id=data["id"],
            plan_id=data["plan_id"],
            frozen_epochs=list(data["frozen_epochs"]),
            updates=int(data["updates"]),
        )
