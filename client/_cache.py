"""The local plan cache: what the offline fallback draws a plan's streams from.

A plan is named by the hash of its dataset and its canonical config, so its cached copy
never goes stale: an entry is written once and only ever read afterwards. One directory
per plan::

    <cache_dir>/plans/<plan_id>/
        plan.json       GET /v1/plans/{id}: config, num_samples, versions
        dataset.json    GET /v1/datasets/{id}: size (a split needs it), classes, counts
        weights.npy     GET /v1/plans/{id}/weights: float64, one per population position
        codes.npy       GET /v1/datasets/{id}/codes: int64, one per dataset sample
                        (one per label occurrence for label sets): ``hierarchical``
                        plans (their table depends on the classes), batch plans (their
                        batches do), plans with a schedule (their epochs' weights do) and
                        stratified splits (their population does)
        offsets.npy     GET /v1/datasets/{id}/offsets: label-set datasets, with codes.npy
        manifest.json   written last: the entry is complete; the arrays' SHA-256

A mixture plan's entry holds its ``plan.json`` (config and each source's length) and, for
``unit: "tokens"``, ``tokens-<i>.npy`` (GET /v1/datasets/{id}/lengths of source ``i``);
its manifest says ``"kind": "mixture"``. Its plan sources have entries of their own.

Every file is written to a temporary name and renamed into place, so a reader (another
rank on the same machine, a job killed mid-write) sees a whole file or none.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from sampleplan.client._exceptions import CacheError
from sampleplan.client._models import Dataset, Plan
from sampleplan.core.algorithms import ALGORITHMS

__all__ = ["CachedMixture", "CachedPlan", "PlanCache", "default_cache_dir"]

_FORMAT = 1
_PLAN_ID = re.compile(r"[A-Za-z0-9_-]{1,128}")


def default_cache_dir() -> Path:
    """Where plans are cached unless told otherwise.

    ``$SAMPLEPLAN_CACHE_DIR``, else ``$XDG_CACHE_HOME/sampleplan``, else ``~/.cache/sampleplan``.
    """
    explicit = os.environ.get("SAMPLEPLAN_CACHE_DIR")
    if explicit:
        return Path(explicit)
    xdg = os.environ.get("XDG_CACHE_HOME")
    # The XDG spec says a relative value is invalid and must be ignored.
    base = Path(xdg) if xdg and os.path.isabs(xdg) else Path.home() / ".cache"
    return base / "sampleplan"


def _weights_digest(weights: npt.NDArray[np.float64]) -> str:
    return hashlib.sha256(np.ascontiguousarray(weights, dtype="<f8").data).hexdigest()


def _codes_digest(codes: npt.NDArray[np.int64]) -> str:
    return hashlib.sha256(np.ascontiguousarray(codes, dtype="<i8").data).hexdigest()


def _npy_bytes(values: npt.NDArray[Any], dtype: str) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, np.ascontiguousarray(values, dtype=dtype), allow_pickle=False)
    return buffer.getvalue()


def _write_atomically(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _json_bytes(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":")).encode()


@dataclass(frozen=True, eq=False)
class CachedPlan:
    """A plan as cached: its JSON, its dataset's size and its population's weights.

    ``codes`` (the dataset's class codes) is cached for ``hierarchical`` plans, batch
    plans, plans with a schedule and stratified splits (:func:`needs_labels`), with
    ``offsets`` too for label-set datasets.
    """

    plan: Plan
    dataset: Dataset
    weights: npt.NDArray[np.float64]
    codes: npt.NDArray[np.int64] | None = None
    offsets: npt.NDArray[np.int64] | None = None


@dataclass(frozen=True, eq=False)
class CachedMixture:
    """A mixture plan as cached: its JSON and each source's token lengths (``None``: none)."""

    plan: Plan
    token_lengths: list[npt.NDArray[np.int64] | None]


def needs_labels(plan: Plan) -> bool:
    """Whether drawing the plan offline needs its dataset's labels, not only its weights.

    ``hierarchical`` plans (their table depends on the classes), plans with a schedule
    (their epochs' weights do) and stratified splits (their population does).
    """
    split = plan.config.get("split") or {}
    algorithm = ALGORITHMS.get(plan.algorithm)
    return (
        (algorithm is not None and algorithm.needs_codes)
        or plan.config.get("schedule") is not None
        or bool(split.get("stratify", False))
    )


class PlanCache:
    """Plans cached on disk under ``root`` (default: :func:`default_cache_dir`)."""

    def __init__(self, root: str | os.PathLike[str] | None = None) -> None:
        self.root = Path(root) if root is not None else default_cache_dir()

    def directory(self, plan_id: str) -> Path:
        """Where the plan's entry lives; refuses ids that could escape the cache."""
        if not _PLAN_ID.fullmatch(plan_id):
            raise CacheError(f"not a plan id: {plan_id!r}")
        return self.root / "plans" / plan_id

    def has(self, plan_id: str) -> bool:
        """Whether a complete entry exists (its manifest, written last, is there)."""
        return (self.directory(plan_id) / "manifest.json").is_file()

    def store(
        self,
        plan: Plan,
        dataset: Dataset,
        weights: npt.NDArray[np.float64],
        codes: npt.NDArray[np.int64] | None = None,
        offsets: npt.NDArray[np.int64] | None = None,
    ) -> None:
        """Write the plan's entry; rewriting an existing one writes the same bytes.

        ``codes``, the dataset's class codes (and for label sets its ``offsets``), are
        needed (and only kept) for plans that :func:`needs_labels`.
        """
        if not plan.raw:
            raise CacheError("only a Plan read from the service (Plan.from_json) can be cached")
        if weights.shape != (plan.population_size,):
            raise CacheError(
                f"plan {plan.id} has {plan.population_size} population positions, "
                f"but {weights.shape} weights were given"
            )
        required = needs_labels(plan)
        why = "'hierarchical', has a schedule or a stratified split"
        if dataset.multi_label and (required or codes is not None):
            if offsets is None or offsets.shape != (dataset.size + 1,):
                raise CacheError(
                    f"plan {plan.id} needs its label-set dataset's {dataset.size + 1} offsets, "
                    f"but {None if offsets is None else offsets.shape} were given"
                )
            if codes is None or codes.shape != (int(offsets[-1]),):
                raise CacheError(
                    f"plan {plan.id} needs its dataset's {int(offsets[-1])} label codes, "
                    f"but {None if codes is None else codes.shape} were given"
                )
        elif required and codes is None:
            raise CacheError(
                f"plan {plan.id} is {why}: its dataset's {dataset.size} class codes "
                "are needed, but none were given"
            )
        elif codes is not None and codes.shape != (dataset.size,):
            raise CacheError(
                f"plan {plan.id}'s dataset has {dataset.size} samples, but {codes.shape} "
                "class codes were given"
            )
        directory = self.directory(plan.id)
        directory.mkdir(parents=True, exist_ok=True)
        _write_atomically(directory / "weights.npy", _npy_bytes(weights, "<f8"))
        manifest = {
            "format": _FORMAT,
            "plan_id": plan.id,
            "weights_sha256": _weights_digest(weights),
        }
        if codes is not None:
            # Batch plans keep them too (their batches depend on the classes).
            _write_atomically(directory / "codes.npy", _npy_bytes(codes, "<i8"))
            manifest["codes_sha256"] = _codes_digest(codes)
            if dataset.multi_label:
                assert offsets is not None
                _write_atomically(directory / "offsets.npy", _npy_bytes(offsets, "<i8"))
                manifest["offsets_sha256"] = _codes_digest(offsets)
        _write_atomically(directory / "plan.json", _json_bytes(plan.raw))
        # The token-length fields only where set: an entry reads as it always has.
        fields = {
            k: v
            for k, v in dataclasses.asdict(dataset).items()
            if v is not None or k not in ("total_tokens", "labels_dataset_id")
        }
        _write_atomically(directory / "dataset.json", _json_bytes(fields))
        _write_atomically(directory / "manifest.json", _json_bytes(manifest))

    def store_mixture(
        self, plan: Plan, token_lengths: list[npt.NDArray[np.int64] | None] | None = None
    ) -> None:
        """Write a mixture plan's entry: its JSON and its sources' token lengths."""
        if not plan.raw or plan.sources is None:
            raise CacheError("only a mixture Plan read from the service can be cached so")
        tokens = token_lengths or [None] * len(plan.sources)
        if len(tokens) != len(plan.sources):
            raise CacheError(f"{len(tokens)} token lengths for {len(plan.sources)} sources")
        directory = self.directory(plan.id)
        directory.mkdir(parents=True, exist_ok=True)
        digests: list[str | None] = []
        for i, (row, values) in enumerate(zip(plan.sources, tokens, strict=True)):
            if values is None:
                digests.append(None)
                continue
            if values.shape != (row.length,):
                raise CacheError(
                    f"source {row.name!r} of plan {plan.id} has {row.length} samples, but "
                    f"{values.shape} token lengths were given"
                )
            _write_atomically(directory / f"tokens-{i}.npy", _npy_bytes(values, "<i8"))
            digests.append(_codes_digest(values))
        manifest = {
            "format": _FORMAT,
            "kind": "mixture",
            "plan_id": plan.id,
            "tokens_sha256": digests,
        }
        _write_atomically(directory / "plan.json", _json_bytes(plan.raw))
        _write_atomically(directory / "manifest.json", _json_bytes(manifest))

    def is_mixture(self, plan_id: str) -> bool:
        """Whether the cached entry of ``plan_id`` is a mixture plan's (``False``: absent)."""
        try:
            manifest = json.loads((self.directory(plan_id) / "manifest.json").read_bytes())
        except (OSError, ValueError):
            return False
        return isinstance(manifest, dict) and manifest.get("kind") == "mixture"

    def load_mixture(self, plan_id: str) -> CachedMixture:
        """Read and check a mixture plan's entry (:class:`~client.CacheError` if absent or
        damaged)."""
        directory = self.directory(plan_id)
        if not self.has(plan_id):
            raise CacheError(f"plan {plan_id} is not in the cache at {self.root}")
        try:
            manifest = json.loads((directory / "manifest.json").read_bytes())
            plan = Plan.from_json(json.loads((directory / "plan.json").read_bytes()))
            digests = manifest["tokens_sha256"]
            tokens = [
                None
                if digest is None
                else np.load(directory / f"tokens-{i}.npy", allow_pickle=False)
                for i, digest in enumerate(digests)
            ]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise CacheError(
                f"the cached copy of plan {plan_id} in {directory} cannot be read ({exc!r})"
            ) from exc
        problems = []
        if manifest.get("format") != _FORMAT or manifest.get("kind") != "mixture":
            problems.append("it is not a mixture entry of this cache format")
        if plan.id != plan_id or manifest.get("plan_id") != plan_id or plan.sources is None:
            problems.append("it belongs to another plan")
        elif len(tokens) != len(plan.sources):
            problems.append("it has token lengths for another number of sources")
        else:
            for row, values, digest in zip(plan.sources, tokens, digests, strict=True):
                if values is None:
                    continue
                if values.dtype != np.dtype("<i8") or values.shape != (row.length,):
                    problems.append(f"source {row.name!r}'s token lengths are {values.shape}")
                elif _codes_digest(values) != digest:
                    problems.append(f"source {row.name!r}'s token lengths fail their checksum")
        if problems:
            raise CacheError(
                f"the cached copy of plan {plan_id} in {directory} is damaged "
                f"({'; '.join(problems)}); delete that directory to fetch it again"
            )
        return CachedMixture(
            plan=plan,
            token_lengths=[None if t is None else t.astype(np.int64, copy=False) for t in tokens],
        )

    def load(self, plan_id: str) -> CachedPlan:
        """Read and check the plan's entry; :class:`~client.CacheError` if absent or damaged."""
        directory = self.directory(plan_id)
        if not self.has(plan_id):
            raise CacheError(f"plan {plan_id} is not in the cache at {self.root}")
        try:
            manifest = json.loads((directory / "manifest.json").read_bytes())
            plan = Plan.from_json(json.loads((directory / "plan.json").read_bytes()))
            dataset = Dataset(**json.loads((directory / "dataset.json").read_bytes()))
            weights = np.load(directory / "weights.npy", allow_pickle=False)
            with_codes = "codes_sha256" in manifest
            codes = np.load(directory / "codes.npy", allow_pickle=False) if with_codes else None
            offsets = (
                np.load(directory / "offsets.npy", allow_pickle=False)
                if "offsets_sha256" in manifest
                else None
            )
            if needs_labels(plan) and codes is None:
                raise ValueError("the plan needs its dataset's class codes, and none are cached")
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise CacheError(
                f"the cached copy of plan {plan_id} in {directory} cannot be read ({exc!r})"
            ) from exc
        problems = []
        if manifest.get("format") != _FORMAT:
            problems.append(f"cache format {manifest.get('format')!r}, expected {_FORMAT}")
        if plan.id != plan_id or manifest.get("plan_id") != plan_id:
            problems.append("it belongs to another plan")
        if weights.dtype != np.dtype("<f8") or weights.shape != (plan.population_size,):
            problems.append(f"its weights are {weights.dtype} {weights.shape}")
        elif manifest.get("weights_sha256") != _weights_digest(weights):
            problems.append("its weights do not match their checksum")
        if offsets is not None:
            if offsets.dtype != np.dtype("<i8") or offsets.shape != (dataset.size + 1,):
                problems.append(f"its offsets are {offsets.dtype} {offsets.shape}")
            elif manifest.get("offsets_sha256") != _codes_digest(offsets):
                problems.append("its offsets do not match their checksum")
        expected_codes = (
            (int(offsets[-1]),) if offsets is not None and offsets.shape[0] else (dataset.size,)
        )
        if codes is not None:
            if codes.dtype != np.dtype("<i8") or codes.shape != expected_codes:
                problems.append(f"its class codes are {codes.dtype} {codes.shape}")
            elif manifest.get("codes_sha256") != _codes_digest(codes):
                problems.append("its class codes do not match their checksum")
            elif codes.shape[0] and not 0 <= int(codes.min()) <= int(codes.max()) < len(
                dataset.classes
            ):
                problems.append("its class codes are not indices of the dataset's classes")
        if problems:
            raise CacheError(
                f"the cached copy of plan {plan_id} in {directory} is damaged "
                f"({'; '.join(problems)}); delete that directory to fetch it again"
            )
        return CachedPlan(
            plan=plan,
            dataset=dataset,
            weights=weights.astype(np.float64, copy=False),
            codes=None if codes is None else codes.astype(np.int64, copy=False),
            offsets=None if offsets is None else offsets.astype(np.int64, copy=False),
        )
