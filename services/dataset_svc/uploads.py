"""One pass over an upload: bytes go to object storage and through the ingest pipeline
at the same time, with memory bounded by a few chunks."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import io
from collections.abc import AsyncIterable, AsyncIterator, Callable
from dataclasses import dataclass

import janus

from services.common.objectstore import ObjectStore
from services.dataset_svc.domain.ingest import IngestResult

_EOF = object()
_ABORT = object()
# Chunks waiting for the parser; with 1 MiB chunks this bounds the hand-over to ~8 MiB.
_PIPE_CHUNKS = 8


class _UploadAborted(Exception):
    """Raised inside the parser thread when the upload stops before its end."""


class _PipeReader(io.RawIOBase):
    """The parser thread's end of the pipe: a blocking, non-seekable byte stream."""

    def __init__(self, queue: janus.SyncQueue) -> None:
        self._queue = queue
        self._pending = memoryview(b"")
        self._eof = False

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:  # type: ignore[override]
        while not self._pending:
            if self._eof:
                return 0
            item = self._queue.get()
            if item is _ABORT:
                raise _UploadAborted("the upload stopped before its end")
            if item is _EOF:
                self._eof = True
                return 0
            self._pending = memoryview(item)
        n = min(len(buffer), len(self._pending))
        buffer[:n] = self._pending[:n]
        self._pending = self._pending[n:]
        return n


@dataclass(frozen=True)
class StoredUpload:
    size_bytes: int
    sha256: str
    ingest: IngestResult


async def store_and_ingest(
    chunks: AsyncIterable[bytes],
    *,
    object_store: ObjectStore,
    raw_key: str,
    run_ingest: Callable[[io.BufferedReader], IngestResult],
    max_bytes: int,
    too_large: Callable[[], Exception],
) -> StoredUpload:
    """Streams `chunks` to `raw_key` while `run_ingest` parses them in a thread; past
    `max_bytes`, raises `too_large()`.

    Whichever side fails first stops the other: a parse error aborts the multipart
    upload (nothing is left in the bucket), a storage error or an oversize upload
    stops the parser. The parser's error wins, since it says what is wrong with the file.
    """
    queue: janus.Queue = janus.Queue(maxsize=_PIPE_CHUNKS)
    reader = io.BufferedReader(_PipeReader(queue.sync_q), buffer_size=1 << 20)
    parser = asyncio.ensure_future(asyncio.to_thread(run_ingest, reader))
    hasher = hashlib.sha256()
    size = 0

    async def hand_over(item: object) -> None:
        put = asyncio.ensure_future(queue.async_q.put(item))
        await asyncio.wait({put, parser}, return_when=asyncio.FIRST_COMPLETED)
        if not put.done():
            put.cancel()
        if parser.done() and parser.exception() is not None:
            raise parser.exception()  # type: ignore[misc]

    async def tee() -> AsyncIterator[bytes]:
        nonlocal size
        async for chunk in chunks:
            if not chunk:
                continue
            size += len(chunk)
            if size > max_bytes:
                raise too_large()
            hasher.update(chunk)
            await hand_over(chunk)
            yield chunk
        await hand_over(_EOF)

    try:
        await object_store.put_stream(raw_key, tee())
        result = await parser
    except BaseException:
        await _stop_parser(queue, parser)
        parse_error = None if parser.cancelled() else parser.exception()
        if parse_error is not None and not isinstance(parse_error, _UploadAborted):
            raise parse_error from None
        raise
    finally:
        queue.close()
    return StoredUpload(size_bytes=size, sha256=hasher.hexdigest(), ingest=result)


async def _stop_parser(queue: janus.Queue, parser: asyncio.Future) -> None:
    """Wakes a parser blocked on the pipe and waits until its thread has returned."""
    if not parser.done():
        while True:
            try:
                queue.sync_q.get_nowait()
            except Exception:  # noqa: BLE001 - janus raises queue.Empty
                break
        with contextlib.suppress(Exception):  # full again: the parser drains it and stops
            queue.sync_q.put_nowait(_ABORT)
    await asyncio.wait({parser})
