"""A stored mixture plan's :class:`Mixture`, rebuilt from its canonical config.

NOTE [Stored mixtures]
    A mixture plan is stored as its canonical config (``sources`` with their dataset or
    plan ids, ``mixing`` with every default filled in, ``num_samples``, ``seed``); its
    sources' lengths, token lengths and plans live elsewhere (the datasets, the plans).
    :func:`stored_mixture` is the one function that puts them back together into the
    :class:`Mixture` whose drawer gives the plan's streams. The client's offline fallback
    calls it on the copies it cached, so the stream it draws when the service is
    unreachable is the service's by construction, not by a second implementation.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from sampleplan.core.errors import InvalidPlanConfig
from sampleplan.core.mixtures.orders import PlanStream, SourceOrder, order_from_json
from sampleplan.core.mixtures.spec import (
    Float64Array,
    Mixture,
    MixtureSource,
    mixing_from_json,
)

if TYPE_CHECKING:
    from sampleplan.core.prepared import PreparedPlan

__all__ = ["stored_mixture"]


def stored_mixture(
    config: Mapping[str, Any],
    lengths: Sequence[int],
    *,
    token_lengths: Sequence[Float64Array | None] | None = None,
    plans: Mapping[str, PreparedPlan] | None = None,
) -> Mixture:
    """The mixture a plan's canonical ``config`` defines (NOTE [Stored mixtures]).

    Args:
        config: the plan's canonical config: ``sources`` (each with ``name``, ``weight``
            when proportions are ``"weights"``, ``order``, and ``dataset_id`` or
            ``plan_id``), ``mixing``, ``num_samples`` (``None``: hf-interleave's), ``seed``.
        lengths: each source's dataset length (``ConcatDataset``'s numbering), in order.
        token_lengths: each source's per-sample token lengths (``None`` where it has none).
        plans: the prepared plan of every plan source, by plan id; a plan source draws
            its order from that plan's stream and counts its population's size.
    """
    items = config["sources"]
    if len(items) != len(lengths):
        raise InvalidPlanConfig(f"{len(items)} sources but {len(lengths)} lengths")
    tokens = list(token_lengths) if token_lengths is not None else [None] * len(items)
    sources = []
    for item, length, lengths_i in zip(items, lengths, tokens, strict=True):
        order: SourceOrder
        size = None
        plan_id = item.get("plan_id")
        if plan_id is not None:
            prepared = (plans or {}).get(plan_id)
            if prepared is None:
                raise InvalidPlanConfig(f"source {item.get('name')!r}: plan {plan_id} not given")
            order = PlanStream(prepared)
            size = prepared.population_size
        else:
            order = order_from_json(item.get("order", "reshuffled"), str(item.get("name")))
        weight = item.get("weight")
        sources.append(
            MixtureSource(
                name=item["name"],
                length=int(length),
                weight=weight,
                order=order,
                token_lengths=lengths_i,
                size=size,
            )
        )
    return Mixture(
        tuple(sources),
        mixing_from_json(config.get("mixing")),
        seed=int(config.get("seed", 0)),
        num_samples=config.get("num_samples"),
    )
