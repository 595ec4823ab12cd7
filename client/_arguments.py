"""The arguments both remote samplers take, checked as ``torch.utils.data``'s samplers check theirs.

Messages follow torch's: "num_samples should be a positive integer value, but got
num_samples=0" there, "chunk_size should be a positive integer value, but got chunk_size=0"
here.
"""

from __future__ import annotations

from sampleplan.client._client import SamplePlanClient
from sampleplan.client._models import Plan

__all__ = ["check_int", "checked_sampler_arguments"]


def check_int(name: str, value: object, *, minimum: int, what: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise ValueError(f"{name} should be a {what} integer value, but got {name}={value!r}")
    return value


def checked_sampler_arguments(
    plan: str | Plan,
    *,
    epoch: int,
    chunk_size: int,
    max_chunk_size: int,
    space: str,
    api: SamplePlanClient | None,
    fallback: bool,
    rank: int | None,
    world_size: int | None,
) -> str:
    """The arguments both remote samplers take, checked as torch's samplers check theirs;
    the plan id."""
    plan_id = plan.id if isinstance(plan, Plan) else plan
    if not isinstance(plan_id, str) or not plan_id:
        raise ValueError(f"plan should be a plan id or a Plan, but got plan={plan!r}")
    check_int("epoch", epoch, minimum=0, what="non-negative")
    check_int("chunk_size", chunk_size, minimum=1, what="positive")
    check_int("max_chunk_size", max_chunk_size, minimum=1, what="positive")
    if space not in ("population", "dataset"):
        raise ValueError(f"space should be 'population' or 'dataset', but got space={space!r}")
    if api is None and not fallback:
        raise ValueError("with api=None the sampler draws from its cache: fallback must be True")
    if rank is not None:
        check_int("rank", rank, minimum=0, what="non-negative")
    if world_size is not None:
        check_int("world_size", world_size, minimum=1, what="positive")
        if rank is not None and rank >= world_size:
            raise ValueError(
                f"Invalid rank {rank}, rank should be in the interval [0, {world_size - 1}]"
            )
    return plan_id
