"""One pass over an upload: bytes go to object storage and through the ingest pipeline
at the same time, and the canonical train split follows to object storage while it is
being written (the smaller splits right after), with memory bounded by a few chunks
and parts."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import io
from collections.abc import AsyncIterable, AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import janus

from services.common.errors import InvalidArgument
from services.common.objectstore import MiB, ObjectStore
from services.dataset_svc.domain.ingest import IngestResult

_EOF = object()
_ABORT = object()
# Chunks waiting for the parser; with 1 MiB chunks this bounds the hand-over to ~4 MiB.
_PIPE_CHUNKS = 4
# Multipart part size: each upload holds a few copies of one part while it is sent,
# and the store's cost per byte does not depend on the part size, so take the S3
# minimum (for all parts but the last).
PART_BYTES = 5 * MiB
PARQUET_TYPE = "application/vnd.apache.parquet"
_READ_BYTES = MiB
_POLL_SECONDS = 0.05


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
    canonical: Mapping[Path, str],
    max_bytes: int,
    too_large: Callable[[], Exception],
    declared_size: int = 0,
) -> StoredUpload:
    """Streams `chunks` to `raw_key` while `run_ingest` parses them in a thread, and
    the first file of `canonical` (local path -> key), which the ingest writes, to its
    key as it grows, the others once the ingest has ended; past `max_bytes`, raises
    `too_large()`. A `declared_size` (the header's `size_bytes`) spares the raw upload
    two copies of each part; an upload that then sends more or fewer bytes is refused.

    Whichever side fails first stops the others: a parse error aborts the multipart
    uploads (nothing is left in the bucket), a storage error or an oversize upload
    stops the parser. The parser's error wins, since it says what is wrong with the file.
    """
    queue: janus.Queue = janus.Queue(maxsize=_PIPE_CHUNKS)
    reader = io.BufferedReader(_PipeReader(queue.sync_q), buffer_size=MiB)
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
            if declared_size and size > declared_size:
                raise _size_mismatch(declared_size, f"more than {declared_size:,}")
            hasher.update(chunk)
            await hand_over(chunk)
            yield chunk
        if declared_size and size != declared_size:
            raise _size_mismatch(declared_size, f"{size:,}")
        await hand_over(_EOF)

    uploads = [asyncio.ensure_future(object_store.put_stream(
        raw_key, tee(), part_size=PART_BYTES, queue_chunks=2, length=declared_size or None))]

    async def upload_canonical(path: Path, key: str, after_parser: bool) -> None:
        if after_parser:
            await asyncio.wait({parser})
            if parser.cancelled() or parser.exception() is not None:
                return  # the ingest failed: nothing to send, and its error is raised below
        await object_store.put_stream(key, _growing_file(path, parser), content_type=PARQUET_TYPE,
                                      part_size=PART_BYTES, queue_chunks=1)

    # The first file (the train split, usually the largest by far) follows the ingest;
    # the others are sent once it has ended, so that at most two uploads hold a part.
    uploads += [asyncio.ensure_future(upload_canonical(path, key, after_parser=i > 0))
                for i, (path, key) in enumerate(canonical.items())]
    try:
        await asyncio.gather(*uploads)
        result = await parser
    except BaseException as exc:
        raw_upload = uploads[0]
        if not isinstance(exc, asyncio.CancelledError) and not raw_upload.done():
            raw_upload.cancel()  # it may be waiting for the client's next chunk
        await _stop_parser(queue, parser)  # the canonical uploads end with the parser
        # Each upload aborts its multipart upload; a cancelled one only once, so that
        # its clean-up runs to the end.
        await asyncio.gather(*uploads, return_exceptions=True)
        parse_error = None if parser.cancelled() else parser.exception()
        if parse_error is not None and not isinstance(parse_error, _UploadAborted):
            raise parse_error from None
        raise
    finally:
        queue.close()
    return StoredUpload(size_bytes=size, sha256=hasher.hexdigest(), ingest=result)


def _size_mismatch(declared: int, sent: str) -> InvalidArgument:
    return InvalidArgument.field(
        "header.size_bytes", f"the header declares {declared:,} bytes but the upload sent {sent}; "
        "send the file's exact size, or 0 when it is not known")


async def _growing_file(path: Path, writer: asyncio.Future) -> AsyncIterator[bytes]:
    """The bytes of a file that `writer` is still appending to: whole parts as soon as
    they are on disk (so no upload buffers a part that is not ready yet), the rest
    once `writer` has finished. Raises `writer`'s error if it fails."""
    sent = 0
    while True:
        finished = writer.done()  # read before the size: then the size is final
        if finished and writer.exception() is not None:
            raise writer.exception()  # type: ignore[misc]
        ready = path.stat().st_size if path.exists() else 0
        if not finished:
            ready -= (ready - sent) % PART_BYTES
        while sent < ready:
            data = await asyncio.to_thread(_read_at, path, sent, min(_READ_BYTES, ready - sent))
            if not data:
                raise OSError(f"{path} shrank while it was being uploaded")
            sent += len(data)
            yield data
        if finished:
            return
        await asyncio.sleep(_POLL_SECONDS)


def _read_at(path: Path, offset: int, size: int) -> bytes:
    with open(path, "rb") as f:
        f.seek(offset)
        return f.read(size)


async def _stop_parser(queue: janus.Queue, parser: asyncio.Future) -> None:
    """Wakes a reader blocked on the pipe and waits until the parser has returned. The
    pipe is aborted even when the parser has failed already: its read-ahead thread may
    still be waiting for bytes."""
    while True:
        try:
            queue.sync_q.get_nowait()
        except Exception:  # noqa: BLE001 - janus raises queue.Empty
            break
    with contextlib.suppress(Exception):  # full again: the reader drains it and stops
        queue.sync_q.put_nowait(_ABORT)
    await asyncio.wait({parser})
