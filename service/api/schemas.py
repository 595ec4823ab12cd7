"""Request and response bodies of API v1.

Request models are strict (``3.0`` is not an integer, ``"3"`` is not a number) and forbid
unknown fields, so a typo such as ``num_sample`` is an error instead of a silently
ignored default. Label and weight arrays skip pydantic's per-element validation: the
sampling core checks them in one vectorised pass and says which element is wrong.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SkipValidation, model_validator

from service.core.plan import Algorithm, PlanConfig
from service.core.splitting import Split
from service.core.streams import Space, StreamRequest
from service.core.weighting import Strategy, weights_from_list

Label = int | str


class _Request(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid")


class SplitSpec(_Request):
    """Selects the training population as ``torch.utils.data.random_split`` does."""

    fractions: list[float] | None = Field(
        default=None, description="Fractions adding up to 1, e.g. [0.7, 0.3]; the first part is drawn from."
    )
    lengths: list[int] | None = Field(
        default=None, description="Part lengths adding up to the dataset size, e.g. [414, 178]."
    )
    seed: int = Field(default=0, description="Seed of random_split's torch.Generator, in [0, 2**32).")

    @model_validator(mode="after")
    def _one_of(self) -> SplitSpec:
        if (self.fractions is None) == (self.lengths is None):
            raise ValueError("split needs exactly one of 'fractions' or 'lengths'")
        return self


class DatasetCreate(_Request):
    labels: SkipValidation[list[int] | list[str]] = Field(
        description="Labels in sample order: all integers or all strings.",
        examples=[[0, 0, 0, 1, 2, 2]],
    )


class PlanFields(_Request):
    """How to weight and draw; every field has a default."""

    strategy: Strategy = "inverse_frequency"
    beta: float | None = Field(default=None, description="effective_number only; default 0.999.")
    class_weights: dict[str, float] | None = Field(
        default=None, description="class_weights only: {class name: weight}; unnamed classes weigh 1."
    )
    weights: SkipValidation[list[float]] | None = Field(
        default=None, description="sample_weights only: one weight per dataset sample."
    )
    split: SplitSpec | None = None
    num_samples: int | None = Field(default=None, description="Draws per epoch; null: the population size.")
    replacement: bool = True
    seed: int = Field(default=0, description="Base seed in [0, 2**32); epoch e uses seed + e.")
    algorithm: Algorithm = "torch"

    def to_config(self) -> PlanConfig:
        """The core's validated config (raises the core's 4xx errors)."""
        split = None
        if self.split is not None:
            split = Split(
                seed=self.split.seed,
                fractions=tuple(self.split.fractions) if self.split.fractions is not None else None,
                lengths=tuple(self.split.lengths) if self.split.lengths is not None else None,
            )
        return PlanConfig(
            strategy=self.strategy,
            beta=self.beta,
            class_weights=self.class_weights,
            weights=weights_from_list(self.weights) if self.weights is not None else None,
            split=split,
            num_samples=self.num_samples,
            replacement=self.replacement,
            seed=self.seed,
            algorithm=self.algorithm,
        )


class PlanCreate(PlanFields):
    """A plan over a stored dataset (``dataset_id``) or over inline ``labels``."""

    dataset_id: str | None = None
    labels: SkipValidation[list[int] | list[str]] | None = None

    @model_validator(mode="after")
    def _source(self) -> PlanCreate:
        if (self.dataset_id is None) == (self.labels is None):
            raise ValueError("give exactly one of 'dataset_id' or 'labels'")
        return self

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {"labels": [0, 0, 0, 0, 1, 1, 2], "split": {"fractions": [0.7, 0.3], "seed": 42}, "seed": 0}
            ]
        }
    )


class SampleRequest(PlanFields):
    """``POST /v1/sample``: labels and config, plus which stream to return."""

    labels: SkipValidation[list[int] | list[str]]
    epoch: int = Field(default=0, ge=0)
    rank: int = Field(default=0, ge=0)
    world_size: int = Field(default=1, ge=1)
    offset: int = Field(default=0, ge=0)
    limit: int | None = Field(default=None, ge=0)
    space: Space = "population"

    def to_stream_request(self) -> StreamRequest:
        return StreamRequest(
            epoch=self.epoch,
            rank=self.rank,
            world_size=self.world_size,
            offset=self.offset,
            limit=self.limit,
            space=self.space,
        )


class DatasetOut(BaseModel):
    id: str
    size: int
    label_type: Literal["int", "str"]
    num_classes: int
    classes: list[Label]
    counts: list[int]


class ClassRow(BaseModel):
    label: Label = Field(alias="class")
    count: int = Field(description="Samples of the class in the population.")
    class_weight: float | None = Field(description="Weight of each of its samples; null for sample_weights.")
    expected_share: float = Field(description="Probability that one draw lands in this class.")
    expected_draws: float = Field(description="Expected draws of this class per epoch (with replacement).")

    model_config = ConfigDict(populate_by_name=True, serialize_by_alias=True)


class PlanOut(BaseModel):
    id: str
    dataset_id: str
    config: dict[str, Any]
    population_size: int
    num_samples: int
    classes: list[ClassRow]
    versions: dict[str, str]


class SampleOut(BaseModel):
    plan: PlanOut = Field(description="The plan these arrays belong to (not stored).")
    counts: list[int] = Field(description="Class counts of the population, in class order.")
    weights: list[float] = Field(description="Per-sample weights of the population.")
    epoch: int
    rank: int
    world_size: int
    offset: int
    space: Space
    length: int = Field(description="Length of the rank's whole epoch stream.")
    indices: list[int]


class WeightsOut(BaseModel):
    """``GET /v1/plans/{plan_id}/weights`` as JSON (written directly, without this model)."""

    plan_id: str
    length: int = Field(description="Population size: one weight per population position.")
    weights: list[float]


class IndicesOut(BaseModel):
    """``GET /v1/plans/{plan_id}/indices`` as JSON (written directly, without this model)."""

    plan_id: str
    epoch: int
    rank: int
    world_size: int
    offset: int
    length: int = Field(description="Length of the rank's whole epoch stream.")
    space: Space
    indices: list[int] = Field(description="The page: positions in the population (or dataset).")


class Problem(BaseModel):
    """RFC 9457 problem details, the body of every error response."""

    type: str
    title: str
    status: int
    detail: str
    instance: str | None = None
    errors: list[dict[str, Any]] | None = None
