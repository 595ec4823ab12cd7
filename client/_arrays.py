"""Arrays on the wire: binary downloads into preallocated arrays, binary label uploads.

The service answers array endpoints with raw little-endian values when asked with
``Accept: application/octet-stream``, announcing their dtype (``X-Sampleplan-Dtype``) and
count (``X-Sampleplan-Length``). The client allocates the result once and copies each
received piece into it: no list of chunks, no join, no second buffer.

NOTE [Reading speed]
    Measured on loopback with 1e7 int64 values (80 MB): copying the pieces httpx yields,
    as the transport delivers them (no ``chunk_size``), into a memoryview ran at about
    0.5-1 GB/s; asking httpx to re-chunk (``chunk_size=``) or reading
    ``response.content`` and then ``np.frombuffer`` was 1.5-3x slower. The request says
    ``Accept-Encoding: identity`` so no decoder sits in between (``iter_bytes`` would
    still decode a body compressed by a proxy that ignores it).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import numpy.typing as npt

__all__ = ["BINARY", "MANIFEST_MEDIA_TYPES", "ArrayRead", "binary_labels", "manifest_media_type"]

BINARY = "application/octet-stream"

#: Media types the service reads datasets from, by file suffix.
MANIFEST_MEDIA_TYPES: dict[str, str] = {
    ".npy": "application/x-npy",
    ".npz": "application/x-npz",
    ".csv": "text/csv",
    ".jsonl": "application/x-ndjson",
    ".ndjson": "application/x-ndjson",
    ".txt": "text/plain",
    ".json": "application/json",
}

_INT32 = np.iinfo(np.int32)
_INT64_MAX = np.iinfo(np.int64).max


class _ArrayFill:
    """Copies a binary body's pieces into one preallocated array, checking its length."""

    def __init__(self, response: httpx.Response, want: np.dtype[Any]) -> None:
        wire = np.dtype(response.headers.get("x-sampleplan-dtype", want.newbyteorder("<").str))
        if "x-sampleplan-length" in response.headers:
            length = int(response.headers["x-sampleplan-length"])
        else:
            length = int(response.headers["content-length"]) // wire.itemsize
        self.want = want
        self.out = np.empty(length, dtype=wire)
        self.view = self.out.data.cast("B")
        self.filled = 0

    def add(self, piece: bytes) -> None:
        end = self.filled + len(piece)
        if end > len(self.view):
            raise httpx.RemoteProtocolError(
                f"the array body is longer than the announced {len(self.view)} bytes"
            )
        self.view[self.filled : end] = piece
        self.filled = end

    def result(self) -> npt.NDArray[Any]:
        if self.filled != len(self.view):
            raise httpx.RemoteProtocolError(
                f"the array body ended after {self.filled} of {len(self.view)} bytes"
            )
        return self.out if self.out.dtype == self.want else self.out.astype(self.want)


def _is_binary(response: httpx.Response) -> bool:
    media_type: str = response.headers.get("content-type", "").split(";")[0].strip().lower()
    return media_type == BINARY


@dataclass(frozen=True)
class ArrayRead:
    """How to read an array endpoint's streamed answer: its dtype and its JSON key.

    Binary bodies are read into a preallocated array (see NOTE [Reading speed]); a JSON
    body (a service that ignored ``Accept``) is parsed and ``key`` taken from it. A body
    shorter or longer than announced raises ``httpx.RemoteProtocolError``, a transport
    failure the caller may retry.
    """

    dtype: np.dtype[Any]
    key: str

    def read(self, response: httpx.Response) -> npt.NDArray[Any]:
        if not _is_binary(response):
            response.read()
            return np.asarray(response.json()[self.key], dtype=self.dtype)
        fill = _ArrayFill(response, self.dtype)
        for piece in response.iter_bytes():
            fill.add(piece)
        return fill.result()

    async def aread(self, response: httpx.Response) -> npt.NDArray[Any]:
        if not _is_binary(response):
            await response.aread()
            return np.asarray(response.json()[self.key], dtype=self.dtype)
        fill = _ArrayFill(response, self.dtype)
        async for piece in response.aiter_bytes():
            fill.add(piece)
        return fill.result()


def binary_labels(labels: Any) -> tuple[bytes, str] | None:
    """``(raw little-endian bytes, dtype name)`` for integer labels, else ``None``.

    The narrowest of ``uint8``, ``uint16``, ``int32`` and ``int64`` that holds them: class
    indices below 65536 travel in 2 bytes each.

    Lists, numpy arrays and tensors of integers qualify; strings, booleans, floats, mixed
    or nested values do not (they go as JSON, where the service explains what is wrong).
    """
    if hasattr(labels, "numpy") and callable(labels.numpy):  # a torch tensor
        labels = labels.detach().cpu().numpy() if hasattr(labels, "detach") else labels.numpy()
    try:
        array = np.asarray(labels)
    except (ValueError, OverflowError, TypeError):
        return None
    if array.ndim != 1 or array.size == 0 or array.dtype.kind not in "iu":
        return None
    low, high = int(array.min()), int(array.max())
    if high > _INT64_MAX:
        return None
    if low >= 0 and high <= 0xFF:
        name, wire = "uint8", "u1"
    elif low >= 0 and high <= 0xFFFF:
        name, wire = "uint16", "<u2"
    elif _INT32.min <= low and high <= _INT32.max:
        name, wire = "int32", "<i4"
    else:
        name, wire = "int64", "<i8"
    return np.ascontiguousarray(array, dtype=wire).tobytes(), name


def manifest_media_type(path: Path) -> str:
    """The upload media type of a file, from its suffix."""
    media_type = MANIFEST_MEDIA_TYPES.get(path.suffix.lower())
    if media_type is None:
        known = ", ".join(sorted(MANIFEST_MEDIA_TYPES))
        raise ValueError(
            f"cannot tell the format of {path.name!r} from its suffix (known: {known}); "
            f"pass media_type="
        )
    return media_type
