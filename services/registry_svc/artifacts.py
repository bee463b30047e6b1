"""A version's files in object storage: copied from a job's output server-side, hashed,
the model card written beside them, archived as a streamed .tar.gz, deleted with the version.

Layout under the registry's prefix:
``registry/projects/{p}/models/{m}/versions/{v}/model/``        the folder as trained (+ README.md)
``registry/projects/{p}/models/{m}/versions/{v}/exports/{id}/`` merged exports
``registry/projects/{p}/models/{m}/versions/{v}/archives/``     .tar.gz archives of those folders
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import tarfile
import time
from collections.abc import AsyncIterator

from services.common.errors import FailedPrecondition, NotFound
from services.common.modelio import split_uri
from services.common.objectstore import ObjectStore
from services.registry_svc.domain.model import ArtifactFile, Artifacts

log = logging.getLogger(__name__)

ROOT = "registry"
CARD_FILE = "README.md"
# What a LoRA job's output holds besides the adapter: the trainer's own merged copy is
# not kept (the registry stores the adapter plus a reference to the base; merging is an
# export made on request).
SKIPPED_DIRS = ("merged/", "checkpoint-")
COPY_CONCURRENCY = 8


def version_prefix(project: str, model_id: str, version: int) -> str:
    return f"{ROOT}/projects/{project}/models/{model_id}/versions/{version}"


def model_prefix(project: str, model_id: str) -> str:
    return f"{ROOT}/projects/{project}/models/{model_id}/"


class ArtifactStore:
    def __init__(self, objects: ObjectStore) -> None:
        self.objects = objects

    def key_of(self, uri: str) -> str:
        return self.objects.parse_uri(uri)

    async def copy_folder(self, source_uri: str, dest_prefix: str, *, adapter_only: bool) -> list[ArtifactFile]:
        """Copies the folder at ``source_uri`` to ``dest_prefix`` without its bytes passing through
        this process (S3 CopyObject), then hashes each copy as a stream. On any failure
        the partial copy is deleted."""
        bucket, prefix = split_uri(source_uri)
        sources = [o for o in await self._list(bucket, prefix + "/")
                   if not (adapter_only and o[0].startswith(SKIPPED_DIRS))]
        if not sources:
            raise FailedPrecondition(f"the tuning job's output folder {source_uri} is empty or gone",
                                     reason="JOB_OUTPUT_MISSING")
        gate = asyncio.Semaphore(COPY_CONCURRENCY)

        async def one(rel: str) -> ArtifactFile:
            async with gate:
                info = await self.objects.copy(f"{prefix}/{rel}", f"{dest_prefix}/{rel}", source_bucket=bucket)
                digest = await self.objects.sha256(f"{dest_prefix}/{rel}")
                return ArtifactFile(rel, info.size, digest)

        try:
            files = await asyncio.gather(*(one(rel) for rel, _size in sources))
        except BaseException:
            await self.delete_quietly(dest_prefix + "/")
            raise
        return sorted(files, key=lambda f: f.path)

    async def _list(self, bucket: str, prefix: str) -> list[tuple[str, int]]:
        def run() -> list[tuple[str, int]]:
            found = self.objects.client.list_objects(bucket, prefix=prefix, recursive=True)
            # Some writers (pyarrow) leave empty `folder/` marker objects: not files.
            return [(o.object_name[len(prefix):], int(o.size or 0)) for o in found
                    if not o.object_name.endswith("/") and len(o.object_name) > len(prefix)]

        return await self.objects._run(run)

    async def write_card(self, artifacts: Artifacts, card: str) -> Artifacts:
        """Writes README.md into the version's folder; returns the artifacts listing it."""
        key = f"{self.key_of(artifacts.uri)}/{CARD_FILE}"
        data = card.encode()
        await self.objects.put_bytes(key, data, content_type="text/markdown; charset=utf-8")
        import hashlib

        entry = ArtifactFile(CARD_FILE, len(data), hashlib.sha256(data).hexdigest())
        files = tuple(sorted([f for f in artifacts.files if f.path != CARD_FILE] + [entry], key=lambda f: f.path))
        return Artifacts(uri=artifacts.uri, files=files, size_bytes=sum(f.size_bytes for f in files),
                         merged_uri=artifacts.merged_uri, model_card_uri=self.objects.uri(key))

    async def delete_quietly(self, prefix: str) -> int:
        try:
            return await self.objects.delete_prefix(prefix)
        except Exception:
            log.exception("could not delete %s", prefix)
            return 0

    async def folder_files(self, uri: str) -> list[tuple[str, int]]:
        key = self.key_of(uri)
        return await self._list(self.objects.bucket, key + "/")

    # --- archives --------------------------------------------------------------------

    async def ensure_archive(self, folder_uri: str, archive_key: str) -> int:
        """A .tar.gz of the folder at ``archive_key`` (made once: folders never change);
        returns its size. Streamed: S3 → tar → gzip → multipart upload, one chunk at a time."""
        with contextlib.suppress(NotFound):
            return (await self.objects.stat(archive_key)).size
        files = await self.folder_files(folder_uri)
        if not files:
            raise FailedPrecondition(f"the folder {folder_uri} holds no files", reason="FOLDER_EMPTY")
        key = self.key_of(folder_uri)
        return await self.objects.put_stream(archive_key, self._tar_chunks(key, files),
                                             content_type="application/gzip")

    async def _tar_chunks(self, key: str, files: list[tuple[str, int]]) -> AsyncIterator[bytes]:
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue = asyncio.Queue(maxsize=8)
        done = object()
        cancelled = False

        class _Sink:
            """tarfile writes here, from its thread; each write waits for queue room."""

            def write(self, data: bytes) -> int:
                if cancelled:
                    raise OSError("archive cancelled")
                asyncio.run_coroutine_threadsafe(queue.put(bytes(data)), loop).result()
                return len(data)

            def flush(self) -> None:
                pass

        def build() -> None:
            try:
                with tarfile.open(fileobj=_Sink(), mode="w|gz", bufsize=1024 * 1024) as tar:
                    for rel, size in sorted(files):
                        info = tarfile.TarInfo(rel)
                        info.size = size
                        info.mtime = int(time.time())
                        info.mode = 0o644
                        with self.objects.open_stream(f"{key}/{rel}") as reader:
                            tar.addfile(info, reader)
            except BaseException as exc:  # noqa: BLE001 - handed to the consumer
                asyncio.run_coroutine_threadsafe(queue.put(exc), loop).result()
            else:
                asyncio.run_coroutine_threadsafe(queue.put(done), loop).result()

        worker = loop.run_in_executor(None, build)
        try:
            while True:
                item = await queue.get()
                if item is done:
                    break
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            cancelled = True
            while not worker.done():  # unblock the writer if it waits for room
                with contextlib.suppress(asyncio.QueueEmpty):
                    queue.get_nowait()
                await asyncio.sleep(0.01)
