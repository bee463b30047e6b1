"""Async object storage over the ``minio`` client (MinIO, moto, any S3).

Every network call runs in a worker thread so the event loop never blocks. Uploads of
unknown length stream through :meth:`ObjectStore.put_stream` with memory bounded by
one multipart part plus a few chunks; a failed or cancelled upload leaves nothing
behind. User-supplied names go through :func:`safe_key` so they can't escape a prefix.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import logging
import threading
from collections.abc import AsyncIterable, AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import certifi
import urllib3
from minio import Minio
from minio.deleteobjects import DeleteObject
from minio.error import S3Error
from tenacity import retry, retry_if_exception, stop_after_attempt, wait_exponential

from services.common.errors import FieldViolation, InvalidArgument, NotFound, Unavailable

log = logging.getLogger(__name__)

MiB = 1024 * 1024
_MISSING_CODES = {"NoSuchKey", "NoSuchObject", "ResourceNotFound", "NoSuchBucket"}
_TRANSIENT_CODES = {"InternalError", "SlowDown", "ServiceUnavailable", "RequestTimeout"}
T = TypeVar("T")


@dataclass(frozen=True)
class ObjectInfo:
    key: str
    size: int
    etag: str | None = None
    last_modified: datetime | None = None
    content_type: str | None = None


# --------------------------------------------------------------------------- keys


def safe_key(*parts: str, field: str = "name") -> str:
    """Join key parts with '/', refusing anything that could leave the prefix.

    Rejects empty parts or segments, absolute parts, '..', '.', backslashes and control
    characters with InvalidArgument on ``field``.
    """
    for part in parts:
        problem = _key_problem(part)
        if problem:
            raise InvalidArgument(
                f"{field}: {problem}", [FieldViolation(field, problem)], reason="UNSAFE_OBJECT_NAME"
            )
    return "/".join(parts)


def _key_problem(part: object) -> str | None:
    if not isinstance(part, str) or not part:
        return "must not be empty"
    shown = part if len(part) <= 100 else part[:100] + "…"
    if part.startswith("/"):
        return f"'{shown}' must not be an absolute path"
    if "\\" in part:
        return f"'{shown}' must not contain backslashes"
    if ".." in part:
        return f"'{shown}' must not contain '..'"
    if any(ord(c) < 32 or ord(c) == 127 for c in part):
        return "must not contain control characters"
    if any(seg in ("", ".") for seg in part.split("/")):
        return f"'{shown}' must not contain empty or '.' path segments"
    if len(part.encode()) > 900:  # S3 keys are limited to 1024 bytes in total
        return "is too long"
    return None


# --------------------------------------------------------------------------- errors & retries


def _is_missing(exc: BaseException) -> bool:
    return isinstance(exc, S3Error) and exc.code in _MISSING_CODES


def _is_transient(exc: BaseException) -> bool:
    if isinstance(exc, S3Error):
        return exc.code in _TRANSIENT_CODES
    return isinstance(exc, (urllib3.exceptions.HTTPError, ConnectionError, TimeoutError))


# Idempotent calls only: a put from a re-readable source, reads, deletes.
_retry = retry(
    retry=retry_if_exception(_is_transient),
    stop=stop_after_attempt(4),
    wait=wait_exponential(multiplier=0.2, max=3),
    reraise=True,
)


# --------------------------------------------------------------------------- readers


class ObjectReader(io.RawIOBase):
    """A sync, file-like reader of one object (for code running in threads).

    The GET starts on first read (in the reading thread) — or at once with
    ``reader = await store.open_stream(key)``. Use it as a context manager (sync or
    async) so the HTTP connection is released.
    """

    def __init__(self, store: ObjectStore, key: str) -> None:
        super().__init__()
        self._store = store
        self.key = key
        self._resp: Any = None

    def _response(self):
        if self.closed:
            raise ValueError("I/O operation on closed object reader")
        if self._resp is None:
            self._resp = self._store._get_object(self.key)
        return self._resp

    def open(self) -> ObjectReader:
        """Start the download now (blocking); returns self."""
        self._response()
        return self

    def __await__(self):
        return self._store._run(self.open).__await__()

    async def __aenter__(self) -> ObjectReader:  # noqa: PYI034
        return await self

    async def __aexit__(self, *exc) -> None:
        await self._store._run(self.close)

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        resp = self._response()
        return resp.read() if size is None or size < 0 else resp.read(size)

    def readinto(self, buffer) -> int:
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def close(self) -> None:
        if self._resp is not None:
            try:
                self._resp.close()
                self._resp.release_conn()
            finally:
                self._resp = None
        super().close()


class _EndOfStream:
    pass


class _StreamAborted(Exception):
    """Raised inside the upload thread so minio aborts its multipart upload."""


class _QueueReader:
    """A blocking ``read()`` for minio's thread, fed chunk by chunk from the event loop."""

    def __init__(self, queue: asyncio.Queue, loop: asyncio.AbstractEventLoop) -> None:
        self._queue = queue
        self._loop = loop
        self._rest = b""  # what the last read took from a chunk but did not return
        self._eof = False

    def _next(self) -> bytes | None:
        item = asyncio.run_coroutine_threadsafe(self._queue.get(), self._loop).result()
        if isinstance(item, _EndOfStream):
            self._eof = True
            return None
        if isinstance(item, BaseException):
            raise _StreamAborted("the upload stream failed") from item
        return item

    def read(self, size: int = -1) -> bytes:
        # Gather up to `size` bytes and join them once: minio asks for a whole part,
        # and a single allocation of its exact size avoids both minio's quadratic
        # `part_data += data` and a growing buffer's reallocations.
        want = size if size is not None and size >= 0 else float("inf")
        parts, have = [self._rest] if self._rest else [], len(self._rest)
        while have < want and not self._eof:
            chunk = self._next()
            if chunk:
                parts.append(chunk)
                have += len(chunk)
        self._rest = b""
        if have > want:
            last, keep = parts[-1], len(parts[-1]) - (have - int(want))
            parts[-1], self._rest = memoryview(last)[:keep], last[keep:]
        return b"".join(parts)


def _drain(queue: asyncio.Queue) -> None:
    while not queue.empty():
        queue.get_nowait()


# --------------------------------------------------------------------------- the store


class ObjectStore:
    """One bucket of an S3-compatible store, with async methods.

    ``client`` is the sync :class:`minio.Minio` client for code already in a thread.
    """

    def __init__(
        self,
        endpoint: str,
        access_key: str,
        secret_key: str,
        bucket: str,
        secure: bool = False,
        region: str = "us-east-1",
    ) -> None:
        if "://" in endpoint:  # accept http://host:port too
            scheme, _, endpoint = endpoint.partition("://")
            secure = scheme == "https"
        self.endpoint = endpoint.rstrip("/")
        self._access_key, self._secret_key = access_key, secret_key
        self.bucket = bucket
        self.region = region
        self.secure = secure
        http = urllib3.PoolManager(
            # A short connect timeout so an absent server fails fast; long reads for big objects.
            timeout=urllib3.Timeout(connect=10, read=300),
            maxsize=32,
            cert_reqs="CERT_REQUIRED",
            ca_certs=certifi.where(),
            retries=urllib3.Retry(
                total=5, backoff_factor=0.2, status_forcelist=[500, 502, 503, 504]
            ),
        )
        self.client = Minio(
            self.endpoint,
            access_key=access_key,
            secret_key=secret_key,
            secure=secure,
            region=region,
            http_client=http,
        )
        # Own threads: a blocked upload must never starve the loop's default executor.
        self._executor = ThreadPoolExecutor(max_workers=32, thread_name_prefix="objectstore")

    @classmethod
    def from_settings(cls, settings: Any) -> ObjectStore:
        return cls(
            settings.s3_endpoint,
            settings.s3_access_key,
            settings.s3_secret_key,
            settings.s3_bucket,
            secure=settings.s3_secure,
            region=settings.s3_region,
        )

    async def _run(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, partial(fn, *args, **kwargs))

    def close(self) -> None:
        """Release threads and pooled connections."""
        self._executor.shutdown(wait=False)
        self.client._http.clear()

    # ---- URIs

    def uri(self, key: str) -> str:
        return f"s3://{self.bucket}/{key}"

    def parse_uri(self, uri: str, field: str = "uri") -> str:
        """``s3://<this bucket>/key`` → ``key``; InvalidArgument for another bucket or scheme."""
        prefix = f"s3://{self.bucket}/"
        if not isinstance(uri, str) or not uri.startswith(prefix) or len(uri) == len(prefix):
            desc = f"expected a URI in {prefix}…, got '{uri}'"
            raise InvalidArgument(f"{field}: {desc}", [FieldViolation(field, desc)])
        return uri[len(prefix) :]

    # ---- bucket

    async def ensure_bucket(self) -> None:
        """Create the bucket if missing (retrying while the server comes up)."""

        @retry(
            retry=retry_if_exception(_is_transient),
            stop=stop_after_attempt(8),
            wait=wait_exponential(multiplier=0.25, max=4),
            reraise=True,
        )
        def make() -> None:
            if not self.client.bucket_exists(self.bucket):
                try:
                    self.client.make_bucket(self.bucket, location=self.region)
                except S3Error as exc:  # a concurrent starter made it first
                    if exc.code not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
                        raise

        await self._run(make)

    def arrow_filesystem(self):
        """A pyarrow S3 filesystem on the same endpoint, for ranged Parquet reads
        (paths are ``f"{bucket}/{key}"``)."""
        from pyarrow import fs

        return fs.S3FileSystem(
            access_key=self._access_key,
            secret_key=self._secret_key,
            endpoint_override=self.endpoint,
            scheme="https" if self.secure else "http",
            region=self.region,
        )

    async def ping(self) -> bool:
        """Readiness probe: True when the bucket answers."""
        try:
            return await self._run(self.client.bucket_exists, self.bucket)
        except Exception:  # noqa: BLE001 - any failure means "not ready"
            return False

    # ---- writes

    async def put_bytes(
        self, key: str, data: bytes, content_type: str = "application/octet-stream"
    ) -> int:
        await self._run(
            _retry(
                lambda: self.client.put_object(
                    self.bucket, key, io.BytesIO(data), len(data), content_type=content_type
                )
            )
        )
        return len(data)

    async def put_file(
        self, key: str, path: str | Path, content_type: str = "application/octet-stream"
    ) -> int:
        """Upload a local file (multipart for big files); returns its size."""
        await self._run(
            _retry(
                lambda: self.client.fput_object(
                    self.bucket, key, str(path), content_type=content_type
                )
            )
        )
        return Path(path).stat().st_size

    async def put_stream(
        self,
        key: str,
        chunks: AsyncIterable[bytes],
        content_type: str = "application/octet-stream",
        part_size: int = 16 * MiB,
        queue_chunks: int = 4,
        length: int | None = None,
    ) -> int:
        """Upload an async stream; returns the bytes written.

        minio's ``put_object`` runs in its own thread, reading from a bounded queue this
        coroutine fills, so memory stays ≈ one part + ``queue_chunks`` chunks. With
        ``length`` (which the stream must then have: a longer or shorter one fails),
        minio sends each part as it reads it; without, it reads one byte ahead to find
        the last part, which costs two more copies of each part.
        If ``chunks`` raises or this task is cancelled, the thread is told to fail,
        minio aborts the multipart upload, and the error propagates once it has —
        no object and no pending upload remain.
        """
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue = asyncio.Queue(maxsize=max(1, queue_chunks))
        done: asyncio.Future = loop.create_future()

        def settle(result: Any, exc: BaseException | None) -> None:
            if done.done():
                return
            if exc is None:
                done.set_result(result)
            else:
                done.set_exception(exc)

        def upload() -> None:
            try:
                result = self.client.put_object(
                    self.bucket,
                    key,
                    _QueueReader(queue, loop),
                    -1 if length is None else length,
                    content_type=content_type,
                    part_size=part_size,
                    num_parallel_uploads=1,  # parallel parts would multiply the memory held
                )
            except BaseException as exc:  # noqa: BLE001 - handed to the loop
                loop.call_soon_threadsafe(settle, None, exc)
            else:
                loop.call_soon_threadsafe(settle, result, None)

        # If the uploader dies early (S3 error), free any producer blocked on a full queue.
        done.add_done_callback(lambda _: _drain(queue))
        threading.Thread(target=upload, name=f"put_stream:{key}", daemon=True).start()

        written = 0
        try:
            async for chunk in chunks:
                written += len(chunk)
                if length is not None and written > length:
                    raise ValueError(f"the stream is longer than the {length} bytes declared")
                if done.done():
                    break  # the upload already failed; `await done` below raises why
                if chunk:
                    await queue.put(chunk)
            if length is not None and written < length:
                raise ValueError(f"the stream ended after {written} of the {length} bytes declared")
            if not done.done():
                await queue.put(_EndOfStream())
            await asyncio.shield(done)
        except BaseException as exc:
            if not done.done():
                # Replace whatever is queued by an abort marker the reader raises on.
                _drain(queue)
                queue.put_nowait(exc if isinstance(exc, Exception) else _StreamAborted(repr(exc)))
                # Wait (bounded) until minio has aborted the multipart upload.
                await asyncio.wait({done}, timeout=120)
            upload_exc = done.exception() if done.done() else None  # retrieved: no asyncio warning
            if done.done() and upload_exc is None:
                # The abort came after the last part was sent: undo the finished object.
                await self._run(self.client.remove_object, self.bucket, key)
            elif upload_exc is exc:  # the upload itself failed
                translated = self._translate(exc, key)
                if translated is not exc:
                    raise translated from exc
            raise
        return written

    async def copy(self, source_key: str, key: str, source_bucket: str | None = None) -> ObjectInfo:
        """Server-side copy of one object (S3 CopyObject, multipart copy past 5 GiB): the
        bytes never pass through this process. Returns the new object's info."""
        from minio.commonconfig import CopySource

        source = CopySource(source_bucket or self.bucket, source_key)
        try:
            await self._run(_retry(self.client.copy_object), self.bucket, key, source)
        except S3Error as exc:
            raise self._translate(exc, source_key) from None
        return await self.stat(key)

    # ---- reads

    def _get_object(self, key: str):
        try:
            return self.client.get_object(self.bucket, key)
        except S3Error as exc:
            raise self._translate(exc, key) from None

    def open_stream(self, key: str) -> ObjectReader:
        """A sync file-like reader (``with store.open_stream(k) as f: f.read(n)`` in a thread).

        Also awaitable: ``async with store.open_stream(k) as f`` opens it off the loop.
        """
        return ObjectReader(self, key)

    async def iter_object(self, key: str, chunk_size: int = MiB) -> AsyncIterator[bytes]:
        """Stream an object's bytes in chunks of ``chunk_size``."""
        reader = await self.open_stream(key)
        try:
            while True:
                data = await self._run(reader.read, chunk_size)
                if not data:
                    return
                yield data
        finally:
            await self._run(reader.close)

    async def get_bytes(self, key: str) -> bytes:
        """The whole object in memory — only for small objects (metadata, cards)."""
        async with self.open_stream(key) as reader:
            return await self._run(reader.read)

    async def sha256(self, key: str, chunk_size: int = 4 * MiB) -> str:
        """Hex SHA-256 of an object, read as a stream (memory: one chunk)."""

        def run() -> str:
            digest = hashlib.sha256()
            with self.open_stream(key) as reader:
                while chunk := reader.read(chunk_size):
                    digest.update(chunk)
            return digest.hexdigest()

        return await self._run(run)

    async def stat(self, key: str) -> ObjectInfo:
        """Size and metadata of an object; NotFound when missing."""
        try:
            st = await self._run(_retry(self.client.stat_object), self.bucket, key)
        except S3Error as exc:
            raise self._translate(exc, key) from None
        return ObjectInfo(st.object_name, st.size or 0, st.etag, st.last_modified, st.content_type)

    async def exists(self, key: str) -> bool:
        try:
            await self.stat(key)
            return True
        except NotFound:
            return False

    async def list(self, prefix: str = "") -> list[ObjectInfo]:
        """Every object under ``prefix`` (recursive)."""

        def run() -> list[ObjectInfo]:
            return [
                ObjectInfo(o.object_name, o.size or 0, o.etag, o.last_modified)
                for o in self.client.list_objects(self.bucket, prefix=prefix, recursive=True)
            ]

        return await self._run(_retry(run))

    # ---- deletes

    async def delete(self, key: str) -> None:
        """Delete one object (no error if it is already gone)."""
        await self._run(_retry(self.client.remove_object), self.bucket, key)

    async def delete_prefix(self, prefix: str) -> int:
        """Delete every object under a non-empty ``prefix``; returns how many were deleted."""
        if not prefix:
            raise InvalidArgument("delete_prefix needs a non-empty prefix")

        def run() -> int:
            count = 0
            names = [
                o.object_name
                for o in self.client.list_objects(self.bucket, prefix=prefix, recursive=True)
            ]
            for start in range(0, len(names), 1000):  # S3 DeleteObjects takes ≤ 1000 keys
                batch = [DeleteObject(n) for n in names[start : start + 1000]]
                errors = list(self.client.remove_objects(self.bucket, batch))  # lazy: must iterate
                if errors:
                    raise Unavailable(
                        f"could not delete {len(errors)} objects under '{prefix}': {errors[0]}"
                    )
                count += len(batch)
            return count

        return await self._run(_retry(run))

    # ---- presigned URLs

    async def presigned_get_url(self, key: str, expires: timedelta = timedelta(hours=1)) -> str:
        return await self._run(self.client.presigned_get_object, self.bucket, key, expires=expires)

    async def presigned_put_url(self, key: str, expires: timedelta = timedelta(hours=1)) -> str:
        """A URL to PUT one object (the client must send a Content-Type header)."""
        return await self._run(self.client.presigned_put_object, self.bucket, key, expires=expires)

    # ---- multipart bookkeeping (tests, cleanup)

    async def pending_uploads(self, prefix: str = "") -> list[tuple[str, str]]:
        """(key, upload_id) of unfinished multipart uploads under ``prefix``."""

        def run() -> list[tuple[str, str]]:
            result = self.client._list_multipart_uploads(self.bucket, prefix=prefix or None)
            return [(u.object_name, u.upload_id) for u in result.uploads]

        return await self._run(run)

    def _translate(self, exc: BaseException, key: str) -> Exception:
        if _is_missing(exc):
            return NotFound.resource("object", self.uri(key), reason="OBJECT_NOT_FOUND")
        if _is_transient(exc):
            return Unavailable(f"object storage is unavailable: {exc}")
        return exc if isinstance(exc, Exception) else RuntimeError(repr(exc))
