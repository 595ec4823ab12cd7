"""A mixture's streams as every stream is served: pages of a rank's deal, and summaries.

The epoch stream of a mixture (its drawer's ``draw_range``) is dealt to ranks exactly as
every plan's stream is (NOTE [Sharding] in ``streams.py``, NOTE [Dealing] in
``dealing.py``): :func:`mixture_page` is a page of rank ``r``'s share, :func:`summarize_mixture`
a rank's whole stream summarised by source (counts, and tokens where known) and SHA-256.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, replace

import numpy as np
import numpy.typing as npt

from sampleplan.core.mixtures.drawers import MixtureDrawer
from sampleplan.core.streams import Int64Array, StreamRequest, shard_positions


def _draw_positions(drawer: MixtureDrawer, epoch: int, positions: Int64Array) -> Int64Array:
    """The epoch stream at ``positions`` (increasing but for wrap-arounds into padding):
    each run between wrap-arounds is drawn as one range."""
    out = np.empty(positions.shape[0], dtype=np.int64)
    if positions.shape[0] == 0:
        return out
    breaks = np.flatnonzero(np.diff(positions) < 0) + 1
    for run in np.split(np.arange(positions.shape[0]), breaks):
        lo, hi = int(positions[run[0]]), int(positions[run[-1]]) + 1
        out[run] = drawer.draw_range(epoch, lo, hi)[positions[run] - lo]
    return out


def mixture_page(drawer: MixtureDrawer, request: StreamRequest) -> Int64Array:
    """The requested page of a rank's share of the epoch: ``ConcatDataset`` positions.

    ``space`` does not matter: a mixture's population and dataset space coincide.
    """
    positions = shard_positions(drawer.num_samples_at(request.epoch), request)
    return _draw_positions(drawer, request.epoch, positions)


@dataclass(frozen=True)
class MixtureSummary:
    """What a rank's stream of an epoch holds: its length, draws (and tokens) per source,
    and the SHA-256 of its little-endian int64 indices."""

    length: int
    source_counts: npt.NDArray[np.int64]
    source_tokens: npt.NDArray[np.float64] | None
    sha256: str


def summarize_mixture(
    drawer: MixtureDrawer, request: StreamRequest, *, chunk: int = 1 << 20
) -> MixtureSummary:
    """Summarise the rank's whole stream for ``request``'s epoch (its page is ignored)."""
    mixture = drawer.mixture
    length = request.length(drawer.num_samples_at(request.epoch))
    counts = np.zeros(len(mixture.sources), dtype=np.int64)
    tokens = None if mixture.mean_token_lengths is None else np.zeros(len(mixture.sources))
    token_table = (
        None
        if tokens is None
        else np.concatenate(
            [s.token_lengths for s in mixture.sources if s.token_lengths is not None]
        )
    )
    bounds = np.concatenate([mixture.offsets, [mixture.size]])
    digest = hashlib.sha256()
    for offset in range(0, length, chunk):
        page = mixture_page(drawer, replace(request, offset=offset, limit=chunk))
        source = np.searchsorted(bounds, page, side="right") - 1
        counts += np.bincount(source, minlength=counts.shape[0])
        if tokens is not None and token_table is not None:
            tokens += np.bincount(source, weights=token_table[page], minlength=counts.shape[0])
        digest.update(np.ascontiguousarray(page, dtype="<i8").data)
    return MixtureSummary(length, counts, tokens, digest.hexdigest())


#: More passes over a source than this in one epoch draw a warning: repeated data loses value.
MAX_PASSES = 4.0


@dataclass(frozen=True)
class SourceShare:
    """A source's requested and realised share of an epoch, and the passes over it.

    ``requested``: its proportion (of tokens under ``unit: "tokens"``, else of samples);
    ``realised``: its share of the epoch's draws; ``tokens_realised``: its share of the
    epoch's tokens by its mean token length (``None`` without token lengths); ``passes``:
    draws over the source's length.
    """

    name: str
    requested: float
    samples: int
    realised: float
    tokens_realised: float | None
    passes: float
    warning: str | None


def mixture_shares(drawer: MixtureDrawer, epoch: int = 0) -> list[SourceShare]:
    """Each source's share of epoch ``epoch`` (computed from counts, not by drawing it)."""
    mixture = drawer.mixture
    length = drawer.num_samples_at(epoch)
    counts = drawer.counts_before(epoch, length)
    means = mixture.mean_token_lengths
    tokens = None if means is None else counts * means
    token_total = None if tokens is None else float(tokens.sum())
    shares = []
    for i, source in enumerate(mixture.sources):
        samples = int(counts[i])
        passes = samples / source.length if source.length else 0.0
        warning = None
        if passes > MAX_PASSES:
            warning = (
                f"source {source.name!r} is taken {passes:.1f} times over in one epoch "
                f"(more than {MAX_PASSES:g}): repeated data loses value"
            )
        token_share = None
        if tokens is not None and token_total:
            token_share = float(tokens[i]) / token_total
        shares.append(
            SourceShare(
                name=source.name,
                requested=float(mixture.proportions[i] / mixture.proportions.sum()),
                samples=samples,
                realised=samples / length if length else 0.0,
                tokens_realised=token_share,
                passes=passes,
                warning=warning,
            )
        )
    return shares
