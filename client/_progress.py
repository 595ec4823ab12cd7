"""An opt-in tqdm progress bar for large response bodies.

The bar wraps the response's byte stream, so ``response.read()`` fills in the body as
usual and the parse that follows does not know a bar was shown. Small bodies (most of
them) never show one: the bar appears only once ``min_bytes`` have arrived.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx

#: Bodies smaller than this never show a bar.
PROGRESS_MIN_BYTES = 1 << 20


def require_tqdm() -> None:
    """Fail early, with the fix, when ``progress=True`` is asked for without tqdm."""
    try:
        import tqdm  # noqa: F401
    except ImportError as exc:
        raise ImportError(
            "progress=True needs tqdm: pip install 'sampleplan[progress]' (or tqdm)"
        ) from exc


class DownloadProgress:
    """Counts a body's bytes; shows a bar once ``min_bytes`` have arrived."""

    def __init__(
        self, description: str, total: int | None, min_bytes: int = PROGRESS_MIN_BYTES
    ) -> None:
        self.description = description
        self.total = total
        self.min_bytes = min_bytes
        self.received = 0
        self._bar: Any = None

    def update(self, n: int) -> None:
        self.received += n
        if self._bar is not None:
            self._bar.update(n)
        elif self.received >= self.min_bytes:
            from tqdm.auto import tqdm

            self._bar = tqdm(
                total=self.total,
                initial=self.received,
                desc=self.description,
                unit="B",
                unit_scale=True,
                unit_divisor=1024,
                leave=False,
            )

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None


def _content_length(response: httpx.Response) -> int | None:
    value = response.headers.get("content-length")
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


class _SyncProgressStream(httpx.SyncByteStream):
    def __init__(self, inner: httpx.SyncByteStream, progress: DownloadProgress) -> None:
        self._inner = inner
        self._progress = progress

    def __iter__(self) -> Iterator[bytes]:
        for chunk in self._inner:
            self._progress.update(len(chunk))
            yield chunk

    def close(self) -> None:
        self._progress.close()
        self._inner.close()


class _AsyncProgressStream(httpx.AsyncByteStream):
    def __init__(self, inner: httpx.AsyncByteStream, progress: DownloadProgress) -> None:
        self._inner = inner
        self._progress = progress

    async def __aiter__(self) -> AsyncIterator[bytes]:
        async for chunk in self._inner:
            self._progress.update(len(chunk))
            yield chunk

    async def aclose(self) -> None:
        self._progress.close()
        await self._inner.aclose()


def attach_progress(response: httpx.Response, description: str, *, asynchronous: bool) -> None:
    """Make reading ``response`` (still unread, sent with ``stream=True``) show a bar."""
    progress = DownloadProgress(description, _content_length(response))
    stream = response.stream
    if asynchronous and isinstance(stream, httpx.AsyncByteStream):
        response.stream = _AsyncProgressStream(stream, progress)
    elif not asynchronous and isinstance(stream, httpx.SyncByteStream):
        response.stream = _SyncProgressStream(stream, progress)
