"""Request and response bodies of API v1.

Request models are strict (``3.0`` is not an integer, ``"3"`` is not a number) and forbid
unknown fields, so a typo such as ``num_sample`` is an error instead of a silently
ignored default. Label and weight arrays skip pydantic's per-element validation: the
sampling core checks them in one vectorised pass and says which element is wrong.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    GetJsonSchemaHandler,
    SkipValidation,
    WithJsonSchema,
    model_validator,
)
from pydantic.config import JsonDict
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema, core_schema

from sampleplan.core.algorithms import AlgorithmName
from sampleplan.core.batches import batching_from_json
from sampleplan.core.config import PlanConfig
from sampleplan.core.epochs import EPOCH_LIMIT
from sampleplan.core.labelsets import LabelReduce
from sampleplan.core.mixtures import MAX_SOURCES
from sampleplan.core.runs import UpdateOp, parse_op
from sampleplan.core.schedules import schedule_from_json
from sampleplan.core.splitting import Split
from sampleplan.core.streams import Space, StreamRequest
from sampleplan.core.weighting import Strategy, weights_from_list

Label = int | str

# Bounds that survive as floats (FastAPI's OpenAPI model types them so): 2**63 - 1 would
# round up to 2**63 and let a client think 2**63 fits.
_INT64: JsonDict = {"minimum": -(2**63), "exclusiveMaximum": 2**63}
_SEED: JsonDict = {"minimum": 0, "maximum": 2**32 - 1}

#: Labels in a request body: checked by the core in one pass (not per element by pydantic),
#: documented as what the core accepts: a non-empty list, all int64 or all strings, or
#: label sets (a list of labels per sample, possibly empty; sampleplan.core.labelsets).
LabelList = Annotated[
    SkipValidation[list[int] | list[str] | list[list[int]] | list[list[str]]],
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "array", "minItems": 1, "items": {"type": "integer", **_INT64}},
                {"type": "array", "minItems": 1, "items": {"type": "string"}},
                {
                    "type": "array",
                    "minItems": 1,
                    "items": {"type": "array", "items": {"type": "integer", **_INT64}},
                },
                {
                    "type": "array",
                    "minItems": 1,
                    "items": {"type": "array", "items": {"type": "string"}},
                },
            ],
            "description": "Labels in sample order: all integers (int64) or all strings; "
            "or label sets, a list of labels per sample ([[0, 3], [2], []]).",
        }
    ),
]


class _Request(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid")


class SplitSpec(_Request):
    """Selects the training population as ``torch.utils.data.random_split`` does."""

    fractions: list[float] | None = Field(
        default=None,
        description="Fractions adding up to 1, e.g. [0.7, 0.3]; the first part is drawn from.",
    )
    lengths: list[int] | None = Field(
        default=None, description="Part lengths adding up to the dataset size, e.g. [414, 178]."
    )
    seed: int = Field(
        default=0,
        description="Seed of random_split's torch.Generator, in [0, 2**32).",
        json_schema_extra=_SEED,
    )
    stratify: bool = Field(
        default=False,
        description="Stratify the parts by class (label sets: iterative stratification), "
        "as NOTE [stratified-v1] defines (NOTE [stratified-v2] with `definitions`); false: "
        "exactly random_split.",
    )

    @model_validator(mode="after")
    def _one_of(self) -> SplitSpec:
        if (self.fractions is None) == (self.lengths is None):
            raise ValueError("split needs exactly one of 'fractions' or 'lengths'")
        return self


class DatasetCreate(_Request):
    labels: LabelList = Field(
        description="Labels in sample order: all integers or all strings; or label sets, "
        "a list of labels per sample ([[0, 3], [2], []]).",
        examples=[[0, 0, 0, 1, 2, 2]],
    )
    lengths: Annotated[
        SkipValidation[list[int]] | None,
        WithJsonSchema(
            {
                "anyOf": [
                    {
                        "type": "array",
                        "items": {"type": "integer", "minimum": 0, "maximum": 2**32 - 1},
                    },
                    {"type": "null"},
                ]
            }
        ),
    ] = Field(
        default=None,
        description="Each sample's token count (one per label), for mixtures with "
        '`"unit": "tokens"`: the dataset is then stored under an id of its own (labels and '
        "lengths together). Tables give them by `length_column` instead.",
    )


class PlanFields(_Request):
    """How to weight and draw; every field has a default."""

    strategy: Strategy = "inverse_frequency"
    beta: float | None = Field(default=None, description="effective_number only; default 0.999.")
    class_weights: dict[str, float] | None = Field(
        default=None,
        description="class_weights only: {class name: weight}; unnamed classes weigh 1.",
    )
    weights: SkipValidation[list[float]] | None = Field(
        default=None, description="sample_weights only: one weight per dataset sample."
    )
    split: SplitSpec | None = None
    num_samples: Annotated[int, Field(json_schema_extra={"minimum": 1})] | None = Field(
        default=None, description="Draws per epoch; null: the population size."
    )
    replacement: bool = True
    seed: int = Field(
        default=0,
        description="Base seed in [0, 2**32); epoch e uses seed + e.",
        json_schema_extra=_SEED,
    )
    algorithm: AlgorithmName = "torch"
    label_reduce: LabelReduce | None = Field(
        default=None,
        description="Label sets: how a sample's class weights combine (sum, max, mean); "
        "default sum. Class-based strategies only.",
    )
    unlabelled_weight: float | None = Field(
        default=None,
        description="Label sets: the weight of a sample with no label; default 0 for "
        "class-based strategies, 1 for repeat_factor and uniform.",
    )
    threshold: float | None = Field(
        default=None,
        description="repeat_factor only: LVIS's frequency threshold t; default 0.001.",
    )
    schedule: dict[str, Any] | None = Field(
        default=None,
        description="Weights as a function of the epoch (strategy left at its default): "
        '`{"kind": "power", "start": 0.0, "end": 1.0, "epochs": 10}` gives class weight '
        "`count ** -p(e)`, `p(e) = start + (end - start) * min(e, epochs) / epochs`; "
        '`{"kind": "dynamic_balance", "lambda": 0.9, "max_d": null}` gives catalyst\'s '
        "DynamicBalanceClassSampler quotas `int(min(D_c ** lambda ** e, max_d) * n_min)` as "
        "weights `quota_c / n_c` (num_samples null: the sum of the quotas). null: the same "
        "weights every epoch.",
        examples=[{"kind": "power", "start": 0.0, "end": 1.0, "epochs": 10}],
    )
    batching: dict[str, Any] | None = Field(
        default=None,
        description='Batch plans: {"kind": "m_per_class", "m": 4, "batch_size": 32} or '
        '{"kind": "class_quota", "quota": {"cat": 8, "dog": 8}}; served by '
        "GET /v1/plans/{plan_id}/batches.",
    )
    num_batches: int | None = Field(
        default=None,
        description="Batch plans: batches per epoch; null: max(1, population_size // batch_size).",
    )
    definitions: dict[str, str] | None = Field(
        default=None,
        description="Which version of a definition the plan draws, by name: "
        '`{"batches": "batches-v2", "stratify": "stratified-v2", "weights": "weights-v2"}` '
        "(the newest: ask for them in a new plan). An entry the "
        "plan has no use for is ignored. Absent: the first versions (batches-v1, "
        "stratified-v1, weights-v1), so a request names the same plan in every release.",
        examples=[{"batches": "batches-v2", "stratify": "stratified-v2", "weights": "weights-v2"}],
    )

    def to_config(self) -> PlanConfig:
        """The core's validated config (raises the core's 4xx errors)."""
        split = None
        if self.split is not None:
            split = Split(
                seed=self.split.seed,
                fractions=tuple(self.split.fractions) if self.split.fractions is not None else None,
                lengths=tuple(self.split.lengths) if self.split.lengths is not None else None,
                stratify=self.split.stratify,
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
            label_reduce=self.label_reduce,
            unlabelled_weight=self.unlabelled_weight,
            threshold=self.threshold,
            schedule=schedule_from_json(self.schedule),
            batching=batching_from_json(self.batching),
            num_batches=self.num_batches,
            definitions=self.definitions,
        )


class PlanFromDataset(PlanFields):
    """A plan over a stored dataset: ``dataset_id`` (``labels`` absent or null)."""

    dataset_id: str = Field(description="The dataset's id, from `POST /v1/datasets`.")
    labels: None = None


class PlanFromLabels(PlanFields):
    """A plan over inline ``labels`` (``dataset_id`` absent or null); they are stored as a
    dataset, as ``POST /v1/datasets`` would store them."""

    labels: LabelList
    dataset_id: None = None


#: A source's ``order``, checked by the core (its 422 names the source).
SourceOrderField = Annotated[
    SkipValidation[Any],
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "string", "enum": ["sequential", "reshuffled"]},
                {
                    "type": "object",
                    "properties": {
                        "shuffle_seed": {"type": "integer", "minimum": 0, "exclusiveMaximum": 2**63}
                    },
                    "required": ["shuffle_seed"],
                    "additionalProperties": False,
                },
            ],
            "description": 'Which element each take is: "sequential" (k mod n), '
            '{"shuffle_seed": s} (numpy.random.default_rng(s).permutation(n), cycled: '
            'Dataset.shuffle(seed=s)) or "reshuffled" (the default: a fresh keyed permutation '
            "per pass). Dataset sources only: a plan source takes its plan's stream.",
        }
    ),
]


class SourceIn(_Request):
    """One source of a mixture: a stored dataset or a plan over one dataset."""

    name: str = Field(min_length=1, max_length=256, description="Unique within the mixture.")
    dataset_id: str | None = Field(
        default=None, description="A stored dataset (its length numbers ConcatDataset's)."
    )
    plan_id: str | None = Field(
        default=None,
        description="A plan over one dataset: its stream, epochs concatenated, in its "
        "dataset's space.",
    )
    weight: float | None = Field(
        default=None,
        description='Proportions "weights" only (required then): a finite number >= 0.',
        json_schema_extra={"minimum": 0},
    )
    order: SourceOrderField = None


class TemperatureIn(_Request):
    temperature: float = Field(
        description="T > 0: proportions size ** (1 / T), normalised.",
        json_schema_extra={"exclusiveMinimum": 0},
    )


class MixingIn(_Request):
    """How the sources are mixed; every option has a default."""

    algorithm: Literal["mixture-v1", "hf-interleave", "megatron-blend"] = Field(
        default="mixture-v1",
        description="mixture-v1 (seeded windows of exact counts), hf-interleave (exactly "
        "datasets.interleave_datasets) or megatron-blend (exactly Megatron-core's "
        "BlendedDataset index).",
    )
    proportions: Literal["weights", "sizes"] | TemperatureIn = Field(
        default="weights",
        description='"weights" (w / sum(w)), "sizes" (the sources\' sizes) or '
        '{"temperature": T} (size ** (1 / T) normalised).',
    )
    stopping: Literal["first_exhausted", "all_exhausted"] | None = Field(
        default=None, description="hf-interleave only; default first_exhausted."
    )
    unit: Literal["samples", "tokens"] | None = Field(
        default=None,
        description='mixture-v1 only; default samples. "tokens" needs every source\'s '
        "dataset uploaded with a length_column.",
    )
    block: int | None = Field(
        default=None,
        description="mixture-v1 only: the window of exact counts; default 1024.",
        json_schema_extra={"minimum": 1},
    )

    def to_json(self) -> dict[str, Any]:
        out = self.model_dump(exclude_none=True)
        if isinstance(self.proportions, TemperatureIn):
            out["proportions"] = {"temperature": self.proportions.temperature}
        return out


class PlanFromSources(_Request):
    """A mixture: one stream over several sources (indices are ConcatDataset positions)."""

    sources: list[SourceIn] = Field(
        min_length=1, max_length=MAX_SOURCES, description="1 to 4096 sources, in this order."
    )
    mixing: MixingIn | None = None
    num_samples: Annotated[int, Field(json_schema_extra={"minimum": 1})] | None = Field(
        default=None,
        description="Positions per epoch; null: the sources' total length (hf-interleave: "
        "must be null, its stopping strategy ends each epoch).",
    )
    seed: int = Field(
        default=0,
        description="Seed in [0, 2**32) (hf-interleave: epoch e uses seed + e).",
        json_schema_extra=_SEED,
    )
    dataset_id: None = None
    labels: None = None


#: The fields of :class:`PlanFields` a mixture accepts besides its own.
_MIXTURE_FIELDS = frozenset({"num_samples", "seed", "sources", "mixing", "dataset_id", "labels"})


class PlanCreate(PlanFields):
    """A plan over a stored dataset (``dataset_id``), over inline ``labels``, or over
    several ``sources`` (a mixture).

    Its JSON schema is :class:`PlanFromDataset`, :class:`PlanFromLabels` or
    :class:`PlanFromSources`, exactly one (see :meth:`__get_pydantic_json_schema__`);
    this model validates all three, and its own check says which source is missing or
    doubled.
    """

    dataset_id: str | None = None
    labels: LabelList | None = None
    sources: list[SourceIn] | None = Field(default=None, max_length=MAX_SOURCES)
    mixing: MixingIn | None = None

    @model_validator(mode="after")
    def _source(self) -> PlanCreate:
        if self.sources is not None:
            if self.dataset_id is not None or self.labels is not None:
                raise ValueError(
                    "'sources' makes a mixture: give no 'dataset_id' or 'labels' beside it"
                )
            other = sorted(set(self.model_fields_set) - _MIXTURE_FIELDS)
            if other:
                raise ValueError(
                    f"a mixture ('sources') takes 'mixing', 'num_samples' and 'seed' only, "
                    f"not {', '.join(repr(name) for name in other)}"
                )
            return self
        if self.mixing is not None:
            raise ValueError("'mixing' applies to a mixture only: give 'sources'")
        if (self.dataset_id is None) == (self.labels is None):
            raise ValueError("give exactly one of 'dataset_id', 'labels' or 'sources'")
        return self

    def sources_json(self) -> list[dict[str, Any]]:
        """The sources as the core reads them (fields given, nothing else)."""
        assert self.sources is not None
        return [s.model_dump(exclude_unset=True) for s in self.sources]

    @classmethod
    def __get_pydantic_json_schema__(
        cls, schema: CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        # NOTE [One source, in a schema generators read]
        #     "Exactly one of dataset_id or labels" as a `oneOf` of two complete objects,
        #     each with every config field and its source required (the other one null
        #     or absent). A `oneOf` of bare `required` fragments beside `properties`
        #     said the same, but client generators read a `oneOf` as the union of its
        #     branches and a fragment with no `type` as no schema at all
        #     (openapi-python-client skipped POST /v1/plans).
        #     A mixture (`sources`) is a third complete object of the same `oneOf`.
        sources = core_schema.union_schema(
            [
                PlanFromDataset.__pydantic_core_schema__,
                PlanFromLabels.__pydantic_core_schema__,
                PlanFromSources.__pydantic_core_schema__,
            ]
        )
        return {
            # Their union is an anyOf of references; no body matches both.
            "oneOf": handler(sources)["anyOf"],
            "title": cls.__name__,
            "description": "A plan over a stored dataset (`dataset_id`) or over inline "
            "`labels`, exactly one, and how to weight and draw from it; or a mixture over "
            "several `sources` and how to mix them.",
            "examples": [
                {
                    "labels": [0, 0, 0, 0, 1, 1, 2],
                    "split": {"fractions": [0.7, 0.3], "seed": 42},
                    "seed": 0,
                }
            ],
        }


class SampleRequest(PlanFields):
    """``POST /v1/sample``: labels and config, plus which stream to return."""

    labels: LabelList
    epoch: int = Field(default=0, ge=0, lt=EPOCH_LIMIT)
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
    counts: list[int] = Field(
        description="Samples of each class; for label sets, samples carrying each label."
    )
    multi_label: bool = Field(default=False, description="Whether samples carry label sets.")
    unlabelled: int | None = Field(
        default=None, description="Label sets only: samples with no label."
    )
    label_cardinality: float | None = Field(
        default=None, description="Label sets only: labels per sample on average."
    )
    total_tokens: int | None = Field(
        default=None,
        # Absent, not null, without lengths: datasets answer as they always have.
        exclude_if=lambda value: value is None,
        description="Datasets uploaded with a `length_column` only: the sum of the samples' "
        "token counts (`GET /v1/datasets/{dataset_id}/lengths` has each).",
    )
    labels_dataset_id: str | None = Field(
        default=None,
        exclude_if=lambda value: value is None,
        description="Datasets uploaded with a `length_column` only: the id of the same labels "
        "without lengths. A plan over one dataset does not use the lengths: its `dataset_id` "
        "is this one.",
    )


class CodesOut(BaseModel):
    """``GET /v1/datasets/{dataset_id}/codes`` as JSON (written directly, without this model)."""

    dataset_id: str
    length: int = Field(description="Dataset size: one code per sample.")
    codes: list[int] = Field(description="Index of each sample's class in `classes`.")


class OffsetsOut(BaseModel):
    """``GET /v1/datasets/{dataset_id}/offsets`` as JSON (written directly, without this model)."""

    dataset_id: str
    length: int = Field(description="Dataset size plus one.")
    offsets: list[int] = Field(
        description="Sample i's labels are codes[offsets[i]:offsets[i + 1]] of /codes."
    )


class LengthsOut(BaseModel):
    """``GET /v1/datasets/{dataset_id}/lengths`` as JSON (written directly, without this model)."""

    dataset_id: str
    length: int = Field(description="Dataset size: one token count per sample.")
    lengths: list[int] = Field(description="Each sample's token count, in sample order.")


class ClassRow(BaseModel):
    """One class of a plan's class table. See the plan's ``epoch_coverage`` for the totals."""

    label: Label = Field(alias="class", description="The class, as in the dataset's labels.")
    count: int = Field(
        description="Samples of the class in the population (the training part when split)."
    )
    class_weight: float | None = Field(
        description="Weight of each of its samples; null for sample_weights."
    )
    data_share: float = Field(
        description="Its share of the population before balancing: count / population_size."
    )
    expected_share: float = Field(
        description="Its expected share of an epoch's draws after balancing: "
        "expected_draws / num_samples (with replacement, the probability that one draw "
        "lands in this class)."
    )
    expected_draws: float = Field(description="Expected draws of this class per epoch.")
    expected_distinct_samples: float = Field(
        description="Expected number of its samples drawn at least once per epoch: "
        "the sum over its samples of 1 - (1 - p_i)^num_samples with replacement, of the "
        "inclusion probabilities without."
    )
    expected_coverage: float | None = Field(
        description="Expected fraction of its samples seen in one epoch: "
        "expected_distinct_samples / count (null for a class with no sample in the population)."
    )
    mean_repeats_per_drawn_sample: float | None = Field(
        description="How often a drawn sample of this class is seen per epoch on average: "
        "expected_draws / expected_distinct_samples (1 without replacement; null if never "
        "drawn). Large values mean few minority samples repeated many times."
    )

    model_config = ConfigDict(populate_by_name=True, serialize_by_alias=True)


class EpochCoverage(BaseModel):
    """How much of the population one epoch sees, over all classes."""

    expected_distinct_samples: float = Field(
        description="Effective number of distinct samples per epoch: the expected number of "
        "population samples drawn at least once."
    )
    expected_coverage: float = Field(description="expected_distinct_samples / population_size.")
    mean_repeats_per_drawn_sample: float = Field(
        description="num_samples / expected_distinct_samples."
    )
    exact: bool = Field(
        description="True when every figure is exact. Without replacement and with unequal "
        "weights, the inclusion probabilities use the approximation 1 - exp(-w_i t), with t "
        "such that they add up to num_samples."
    )


class LabelSetSummary(BaseModel):
    """A label-set plan's population and draws, beyond the per-label table."""

    unlabelled: int = Field(description="Population samples with no label.")
    label_cardinality: float = Field(description="Labels per population sample on average.")
    expected_unlabelled_draws: float = Field(
        description="Expected draws of unlabelled samples per epoch."
    )
    expected_label_cardinality: float = Field(
        description="Labels per drawn sample on average (expected)."
    )


class ClassesPage(BaseModel):
    """Where the rest of a summarised class table is (plans of many classes only)."""

    total: int = Field(description="Classes in the plan's table (`classes` holds the first).")
    offset: int = Field(description="Position of the first row in `classes` (0).")
    limit: int = Field(description="Rows in `classes`.")
    next: str = Field(
        description="The path of the next page: `GET /v1/plans/{plan_id}/classes` with "
        "`offset` and `limit` (and `epoch` for an epoch other than 0)."
    )


class ClassesOut(BaseModel):
    """``GET /v1/plans/{plan_id}/classes``: a page of a plan's class table."""

    plan_id: str
    epoch: int = Field(description="The epoch the rows describe.")
    total: int = Field(description="Classes in the plan's table.")
    offset: int = Field(description="Position (class code) of the first row.")
    limit: int = Field(description="Rows asked for; `classes` has fewer at the end.")
    classes: list[ClassRow] = Field(description="Rows `offset .. offset + limit - 1`.")
    next: str | None = Field(description="The path of the next page; null after the last.")


class PlanOut(BaseModel):
    id: str = Field(description="SHA-256 of the dataset id and the canonical config.")
    dataset_id: str
    config: dict[str, Any] = Field(description="The canonical config, every default filled in.")
    epoch: int = Field(
        default=0,
        description="The epoch the class table and num_samples describe (they change with "
        "the epoch only for a plan with a schedule).",
    )
    population_size: int = Field(description="Samples drawn from: the training part when split.")
    num_samples: int = Field(description="Draws in the epoch.")
    classes: list[ClassRow] = Field(
        description="The class table, classes in canonical (sorted) order; for a plan of "
        "more classes than the service lists inline (`plan_classes_inline`, 10 000 by "
        "default) only the first that many, and `classes_page` says where the rest is."
    )
    classes_page: ClassesPage | None = Field(
        default=None,
        # Absent, not null, when the table is whole: plans answer as they always have.
        exclude_if=lambda value: value is None,
        description="Only when `classes` is cut short: how many classes there are and the "
        "path that pages through them (`GET /v1/plans/{plan_id}/classes`).",
    )
    epoch_coverage: EpochCoverage
    label_sets: LabelSetSummary | None = Field(
        default=None,
        description="Label-set plans only. Their class table counts label occurrences: "
        "`count` samples carrying the label, `data_share` and `expected_share` its share of "
        "the label occurrences before and after, `expected_draws` its expected occurrences "
        "per epoch, `class_weight` the label's weight before the reduce.",
    )
    versions: dict[str, str] = Field(
        description="The reproducibility manifest: what defines this plan's streams (algorithm "
        "and its version, torch, numpy, CPU architecture as `machine`, sampleplan). "
        "Reproducing a stream elsewhere needs the same algorithm version, and for algorithm "
        "`torch` the same torch version and CPU architecture; check a stream with the SHA-256 "
        "from `/v1/plans/{plan_id}/indices/summary`."
    )


class SourceOut(BaseModel):
    """One source of a mixture plan: where it comes from, its place in the ConcatDataset,
    and its requested and realised share of the epoch."""

    name: str
    dataset_id: str | None = Field(description="The source's dataset (null for a plan source).")
    plan_id: str | None = Field(description="The source's plan (null for a dataset source).")
    length: int = Field(
        description="The length of the source's dataset: what ConcatDataset numbers."
    )
    offset: int = Field(description="Its first ConcatDataset position: the lengths before it.")
    size: int = Field(
        description='What "sizes" and temperatures count: its length, or a plan source\'s '
        "population size."
    )
    weight: float | None = Field(description='Its weight (proportions "weights" only).')
    order: str | dict[str, int] = Field(
        description='"sequential", "reshuffled", {"shuffle_seed": s}, or "plan" for a plan source.'
    )
    total_tokens: int | None = Field(
        description="The sum of its samples' token counts (null without a length_column)."
    )
    requested_share: float = Field(
        description='Its proportion as asked (of tokens under "unit": "tokens").'
    )
    sample_share: float = Field(
        description='The proportion of samples the algorithm draws it by (with "unit": '
        '"tokens": requested_share / mean length, normalised).'
    )
    samples: int = Field(description="Its draws in the epoch.")
    realised_share: float = Field(description="samples / num_samples.")
    realised_token_share: float | None = Field(
        description="Its share of the epoch's tokens, by its mean token length (null unless "
        "every source has token lengths)."
    )
    passes: float = Field(description="Passes over the source in the epoch: samples / length.")
    warning: str | None = Field(
        description="Set when the epoch passes over the source more than 4 times: repeated "
        "data loses value."
    )


class MixturePlanOut(BaseModel):
    """A mixture plan: one stream over several sources (plan field ``sources``)."""

    id: str = Field(description="SHA-256 of the canonical config.")
    kind: Literal["mixture"] = "mixture"
    config: dict[str, Any] = Field(
        description="The canonical config: sources (name, dataset_id or plan_id, weight, "
        "order), mixing with every default of its algorithm, num_samples (resolved; null for "
        "hf-interleave) and seed."
    )
    epoch: int = Field(default=0, description="The epoch the shares describe.")
    num_samples: int = Field(
        description="Positions in the epoch (hf-interleave: where its stopping strategy ends it)."
    )
    size: int = Field(description="len(ConcatDataset(sources)): the sources' lengths summed.")
    sources: list[SourceOut]
    warnings: list[str] = Field(description="The sources' warnings, collected.")
    versions: dict[str, str] = Field(
        description="The reproducibility manifest: the mixing algorithm and its version, "
        "numpy, the CPU architecture as `machine`, sampleplan."
    )


class StreamSummaryOut(BaseModel):
    """What one (epoch, rank) stream holds, without the stream itself."""

    plan_id: str
    epoch: int
    rank: int
    world_size: int
    space: Space
    length: int = Field(description="Length of the rank's epoch stream.")
    classes: list[Label] = Field(description="The classes, in canonical order.")
    counts: list[int] = Field(description="Draws of each class in this stream, in class order.")
    sha256: str = Field(
        description="SHA-256 of the stream as little-endian int64 indices (in `space`), one "
        "after another: "
        "`hashlib.sha256(np.asarray(list(sampler), dtype='<i8').tobytes()).hexdigest()`."
    )
    versions: dict[str, str] = Field(description="The plan's reproducibility manifest.")
    tokens: list[float] | None = Field(
        default=None,
        exclude_if=lambda value: value is None,
        description="Mixtures whose every source has token lengths only: the tokens of each "
        "source in this stream (then `classes` are the source names, `counts` its draws).",
    )


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
    epoch: int = Field(description="The epoch these weights are drawn with.")
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
    start: int = Field(default=0, description="Global position the deal starts at.")
    pad: bool = Field(default=True, description="Whether the ragged tail is padded.")
    drop_last: bool = Field(default=False, description="Whether the ragged tail is dropped.")
    indices: list[int] = Field(description="The page: positions in the population (or dataset).")


class RunWeightsOut(BaseModel):
    """``GET /v1/runs/{run_id}/weights`` as JSON (written directly, without this model)."""

    run_id: str
    plan_id: str
    epoch: int
    length: int
    weights: list[float]


class RunIndicesOut(IndicesOut):
    """``GET /v1/runs/{run_id}/indices`` as JSON (written directly, without this model)."""

    run_id: str


class BatchesOut(BaseModel):
    """``GET /v1/plans/{plan_id}/batches`` as JSON (written directly, without this model)."""

    plan_id: str
    epoch: int
    rank: int
    world_size: int
    offset: int = Field(description="First batch of the page in the rank's batches.")
    length: int = Field(description="How many batches the rank gets per epoch.")
    batch_size: int
    space: Space
    batches: list[list[int]] = Field(
        description="The page: one row of batch_size positions (or dataset indices) per batch."
    )


class BatchSummaryOut(BaseModel):
    """What one (epoch, rank) share of batches holds, without the batches themselves."""

    plan_id: str
    epoch: int
    rank: int
    world_size: int
    space: Space
    num_batches: int = Field(description="Batches of this rank in the epoch.")
    batch_size: int
    classes: list[Label] = Field(description="The classes, in canonical order.")
    counts: list[int] = Field(description="Samples of each class over these batches.")
    sha256: str = Field(
        description="SHA-256 of the batches as little-endian int64 indices (in `space`), "
        "row-major, one batch after another."
    )
    versions: dict[str, str] = Field(description="The plan's reproducibility manifest.")


class Problem(BaseModel):
    """RFC 9457 problem details, the body of every error response."""

    type: str
    title: str
    status: int
    detail: str
    instance: str | None = None
    errors: list[dict[str, Any]] | None = None


class RunCreate(_Request):
    """``PUT /v1/runs/{run_id}``: the plan the run draws from."""

    plan_id: str = Field(description="The plan whose weights epoch 0 of the run uses.")


#: An update's ``op``, parsed by the core's one check (its 422 says which ops there are).
UpdateOpField = Annotated[UpdateOp, BeforeValidator(parse_op)]


class RunUpdateIn(_Request):
    """One sparse update of a run's weights, sent during epoch ``epoch``.

    It changes the weights of epoch ``epoch + 1`` and later. Updates of one epoch apply in
    the order ``(step, rank, arrival within that rank)``.
    """

    epoch: int = Field(ge=0, description="The epoch during which the update is sent.")
    rank: int = Field(default=0, ge=0, description="The sending rank.")
    step: int = Field(default=0, ge=0, description="The training step (orders updates).")
    op: UpdateOpField = Field(
        description="`set` (w = v), `mul` (w = w * v) or `ema` (w = (1 - alpha) w + alpha v)."
    )
    alpha: float | None = Field(default=None, description="`ema` only: in (0, 1].")
    indices: SkipValidation[list[int]] = Field(
        description="Population positions (a mixture plan's run: source positions)."
    )
    values: SkipValidation[list[float]] = Field(description="One value per index.")
    update_id: str | None = Field(
        default=None,
        pattern=r"^[A-Za-z0-9._-]{1,64}$",
        description="Chosen by the sender (e.g. a UUID): an update sent again with the same "
        "id (a retry) is applied once. The Python client sets one on every update.",
    )


class RunUpdateMeta(BaseModel):
    """The query of a binary update (``Content-Type: application/octet-stream``)."""

    model_config = ConfigDict(extra="forbid")

    epoch: int = Field(ge=0)
    rank: int = Field(default=0, ge=0)
    step: int = Field(default=0, ge=0)
    op: UpdateOpField
    alpha: float | None = None
    update_id: str | None = Field(default=None, pattern=r"^[A-Za-z0-9._-]{1,64}$")


class RunOut(BaseModel):
    id: str
    plan_id: str
    frozen_epochs: list[int] = Field(
        description="Epochs that have been served: their weights never change again."
    )
    updates: int = Field(description="Updates accepted so far.")
