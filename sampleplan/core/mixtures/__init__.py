"""Mixtures: one exact, shardable, resumable stream over many sources (NOTE [Mixtures]).

``spec`` validates sources and mixing (:class:`Mixture`); ``orders`` says which element of a
source each take is; ``drawers`` holds the mixing algorithms (``mixture-v1``,
``hf-interleave``, ``megatron-blend``) and their drawers; ``kernels`` their sequential
loops; ``pages`` deals a mixture's stream to ranks and summarises it by source.
"""

from sampleplan.core.mixtures.drawers import (
    MIXING_ALGORITHMS,
    MixingAlgorithm,
    MixtureDrawer,
    WindowQuotas,
    mixing_algorithm,
    mixture_drawer,
)
from sampleplan.core.mixtures.orders import PlanStream, ShuffleSeed, SourceOrder, source_elements
from sampleplan.core.mixtures.pages import (
    MixtureSummary,
    SourceShare,
    mixture_page,
    mixture_shares,
    summarize_mixture,
)
from sampleplan.core.mixtures.spec import (
    MAX_SOURCES,
    Mixing,
    Mixture,
    MixtureSource,
    Temperature,
    mixing_from_json,
    sources_from_json,
)

__all__ = [
    "MAX_SOURCES",
    "MIXING_ALGORITHMS",
    "Mixing",
    "MixingAlgorithm",
    "Mixture",
    "MixtureDrawer",
    "MixtureSource",
    "MixtureSummary",
    "PlanStream",
    "ShuffleSeed",
    "SourceOrder",
    "SourceShare",
    "Temperature",
    "WindowQuotas",
    "mixing_algorithm",
    "mixing_from_json",
    "mixture_drawer",
    "mixture_page",
    "mixture_shares",
    "source_elements",
    "sources_from_json",
    "summarize_mixture",
]
