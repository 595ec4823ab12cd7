"""Index streams: drawing an epoch, sharding it across ranks, and cutting pages.

NOTE [Stream definition]
    For algorithm ``torch`` the epoch-``e`` stream of a plan is exactly::

        list(WeightedRandomSampler(weights_f64, num_samples, replacement,
                                   generator=torch.Generator().manual_seed(seed + e)))

    which is ``torch.multinomial(weights_f64, num_samples, replacement, generator=g)``
    drawn whole. ``seed + e`` is the derivation ``DistributedSampler`` uses. The weights
    must be a float64 tensor: float32 weights give a different stream.

NOTE [Sharding]
    A rank's stream is the epoch stream sharded as ``DistributedSampler(drop_last=False)``
    shards its list: pad by repeating from the start up to a multiple of ``world_size``,
    then rank ``r`` takes ``padded[r::world_size]``. Padding repeats the stream
    cyclically (both of DistributedSampler's padding branches do), so position ``p`` of
    the padded list is position ``p % num_samples`` of the stream, and a page of a rank's
    stream never needs the padded list itself. A request may also start at a global
    position (``start``, for an elastic resume) and pad, drop or keep the ragged tail:
    NOTE [Dealing] in ``dealing.py``; the defaults are exactly the sharding above.
"""

from __future__ import annotations

from dataclasses import InitVar, dataclass, field, fields, replace
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
import torch

from sampleplan.core.dealing import dealt_length, dealt_positions, dealt_values
from sampleplan.core.epochs import check_epoch
from sampleplan.core.errors import InvalidStreamRequest

Space = Literal["population", "dataset"]
Int64Array = npt.NDArray[np.int64]

#: ``torch.multinomial`` refuses more categories than this.
TORCH_MAX_CATEGORIES = 2**24

#: Most ranks a stream is sharded across; positions are int64 arithmetic on ranks.
MAX_WORLD_SIZE = 2**31


def epoch_seed(seed: int, epoch: int) -> int:
    """The generator seed of an epoch, as ``DistributedSampler`` derives it."""
    return seed + epoch


def rank_length(num_samples: int, world_size: int) -> int:
    """How many indices each rank gets: ``ceil(num_samples / world_size)``."""
    return -(-num_samples // world_size)


@dataclass(frozen=True)
class PageBounds:
    """Where a request's page lies in a rank's stream of ``num_samples`` draws.

    ``length`` is the rank's whole stream; ``[first, stop)`` the page within it, clipped
    to it. :meth:`StreamRequest.bounds` computes them once per request.
    """

    num_samples: int
    length: int
    first: int
    stop: int


@dataclass(frozen=True)
class StreamRequest:
    """Which part of which stream: an epoch, a rank of a world, and a page of it.

    The one value that says which page a caller wants, from the HTTP query (the service's
    query models build it) through the catalogs to the core, and from the client's
    methods and samplers to the query they send (:meth:`to_query`) and to the offline
    fallback.

    ``start``, ``pad`` and ``drop_last`` say how the epoch is dealt to the ranks (NOTE
    [Dealing] in ``dealing.py``): from global position ``start``, padding the ragged tail
    (the default, as ``DistributedSampler``), dropping it, or neither (``pad=False``).

    A request is checked when made (:class:`InvalidStreamRequest`), except with
    ``check=False``: the client sends what its caller asked for, and the service judges
    it, so that every refusal is the service's own (and its 422 the client's error).
    """

    epoch: int = 0
    rank: int = 0
    world_size: int = 1
    offset: int = 0
    limit: int | None = None
    space: Space = "population"
    start: int = 0
    pad: bool = True
    drop_last: bool = False
    check: InitVar[bool] = True
    # The page's bounds in a stream of some length, kept once computed (see ``bounds``).
    _bounds: PageBounds | None = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self, check: bool) -> None:
        if not check:
            return
        check_epoch(self.epoch)
        if self.world_size < 1:
            raise InvalidStreamRequest(
                f"world_size should be a positive integer, but got world_size={self.world_size}"
            )
        if self.world_size > MAX_WORLD_SIZE:
            raise InvalidStreamRequest(
                f"world_size should be at most 2**31, but got world_size={self.world_size}"
            )
        if not 0 <= self.rank < self.world_size:
            raise InvalidStreamRequest(
                f"rank should be in [0, world_size), but got rank={self.rank} "
                f"with world_size={self.world_size}"
            )
        if self.offset < 0:
            raise InvalidStreamRequest(
                f"offset should be a non-negative integer, but got offset={self.offset}"
            )
        if self.limit is not None and self.limit < 0:
            raise InvalidStreamRequest(
                f"limit should be a non-negative integer, but got limit={self.limit}"
            )
        if self.space not in ("population", "dataset"):
            raise InvalidStreamRequest(
                f"space should be 'population' or 'dataset', but got space={self.space!r}"
            )
        if self.start < 0:
            raise InvalidStreamRequest(
                f"start should be a non-negative integer, but got start={self.start}"
            )

    def bounds(self, num_samples: int) -> PageBounds:
        """The page's bounds in a stream of ``num_samples`` draws (or batches).

        Computed once per request: whoever asks next (the catalog, the core, the response)
        gets the same bounds back. A request is immutable and its bounds are a pure
        function of it and ``num_samples``, so keeping them on it changes nothing else.
        """
        known = self._bounds
        if known is not None and known.num_samples == num_samples:
            return known
        if self.start > num_samples:
            raise InvalidStreamRequest(
                f"start should be at most the epoch's {num_samples} draws, "
                f"but got start={self.start}"
            )
        length = dealt_length(
            num_samples,
            self.start,
            self.world_size,
            self.rank,
            pad=self.pad,
            drop_last=self.drop_last,
        )
        first = min(self.offset, length)
        stop = length if self.limit is None else min(length, first + self.limit)
        bounds = PageBounds(num_samples, length, first, stop)
        object.__setattr__(self, "_bounds", bounds)  # frozen, but this is a cache of it
        return bounds

    def length(self, num_samples: int) -> int:
        """How many indices the rank's stream has (its whole length, not the page's)."""
        return self.bounds(num_samples).length

    def page_bounds(self, num_samples: int) -> tuple[int, int]:
        """``[start, stop)`` of the page within the rank's stream (clipped to its length)."""
        bounds = self.bounds(num_samples)
        return bounds.first, bounds.stop

    def checked(self) -> StreamRequest:
        """This request, checked (a request made with ``check=False`` is checked now)."""
        return replace(self)

    def keywords(self) -> dict[str, Any]:
        """The fields not at their defaults, by name: what a call of the client's methods
        (whose keywords default as these fields do) says to ask for this request."""
        return {
            f.name: getattr(self, f.name) for f in _FIELDS if getattr(self, f.name) != f.default
        }

    def to_query(self, *, page: bool = True) -> dict[str, int | str]:
        """The HTTP query that asks the service for this request.

        ``epoch``, ``rank``, ``world_size``, ``space`` and (with ``page``) ``offset``
        always; ``limit``, ``start``, ``pad`` and ``drop_last`` only when not at their
        defaults, so a plain page's query is what it always was. ``page=False`` leaves
        the page out, for the summaries of a whole stream.
        """
        query: dict[str, int | str] = {
            "epoch": self.epoch,
            "rank": self.rank,
            "world_size": self.world_size,
        }
        if page:
            query["offset"] = self.offset
        query["space"] = self.space
        if page and self.limit is not None:
            query["limit"] = self.limit
        if self.start:
            query["start"] = self.start
        if not self.pad:
            query["pad"] = "false"
        if self.drop_last:
            query["drop_last"] = "true"
        return query


_FIELDS = tuple(f for f in fields(StreamRequest) if not f.name.startswith("_"))


def shard_positions(num_samples: int, request: StreamRequest) -> Int64Array:
    """Epoch-stream positions of the requested page of a rank's shard.

    Sharded exactly like ``DistributedSampler(drop_last=False)`` by default; see NOTE
    [Sharding], and NOTE [Dealing] for ``start``, ``pad`` and ``drop_last``.
    """
    return dealt_positions(*_deal_of(num_samples, request), pad=request.pad)


def _deal_of(num_samples: int, request: StreamRequest) -> tuple[int, int, int, int, int, int]:
    """The request's page as :mod:`~sampleplan.core.dealing` takes it: ``num_samples, start,
    world_size, rank, first, stop``."""
    bounds = request.bounds(num_samples)
    return num_samples, request.start, request.world_size, request.rank, bounds.first, bounds.stop


def draw_torch_epoch(
    weights: npt.NDArray[np.float64], num_samples: int, replacement: bool, seed: int
) -> Int64Array:
    """The whole epoch stream of algorithm ``torch`` for generator seed ``seed``.

    See NOTE [Stream definition]: this is ``WeightedRandomSampler``'s draw, made once.
    """
    generator = torch.Generator().manual_seed(seed)
    drawn = torch.multinomial(
        torch.from_numpy(np.ascontiguousarray(weights, dtype=np.float64)),
        num_samples,
        replacement,
        generator=generator,
    )
    return drawn.numpy().astype(np.int64, copy=False)


def cut_page(
    epoch_stream: Int64Array,
    num_samples: int,
    request: StreamRequest,
    population: Int64Array | None = None,
) -> Int64Array:
    """The requested page of a rank's shard of a whole epoch stream, in the requested space.

    ``population`` maps population positions to dataset indices (``None``: the population
    is the whole dataset). The service and the client's offline fallback both cut pages
    here, so a page means the same thing on either side.
    """
    page = dealt_values(epoch_stream, *_deal_of(num_samples, request), pad=request.pad)
    return in_space(page, request.space, population)


def in_space(page: Int64Array, space: Space, population: Int64Array | None) -> Int64Array:
    """Population positions as they are, or mapped to dataset indices for ``space="dataset"``."""
    if space == "dataset" and population is not None:
        return population[page]
    return page
