"""``client.datasets``: wizard step 1 — datasets, their versions, previews and reports.

Methods return the service's protobuf messages (``Dataset``, ``DatasetVersion``);
previews return :class:`PreviewPage` with rows as plain dicts. A dataset may be
given by id (expanded with the client's project), by full name, or as a returned
``Dataset``; a version as ``DATASET@N``, ``DATASET/versions/N``, a full name,
``DATASET@latest`` or a returned ``DatasetVersion``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from google.protobuf import field_mask_pb2, json_format

from mtw.client import names
from mtw.client.ingest import (
    DEFAULT_CHUNK_SIZE,
    Progress,
    Source,
    UploadStream,
    build_ingest_options,
)
from mtw.client.pagination import aiterate_pages, iterate_pages
from mtw.client.transport import USE_DEFAULT, AsyncTransport, SyncTransport
from mtw.dataset.v1 import dataset_pb2, dataset_version_pb2
from mtw.dataset.v1 import dataset_service_pb2 as svc
from mtw.dataset.v1.dataset_service_pb2_grpc import DatasetServiceStub
from mtw.errors import ConfigurationError, NotFound

SERVICE = "dataset"

Dataset = dataset_pb2.Dataset
DatasetVersion = dataset_version_pb2.DatasetVersion
IngestOptions = dataset_version_pb2.IngestOptions


@dataclass(frozen=True)
class PreviewPage:
    """One page of canonical rows of a split."""

    columns: list[str]
    rows: list[dict[str, Any]]
    total_rows: int
    next_page_token: str
    split: str = "train"
    version: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "split": self.split,
            "columns": self.columns,
            "rows": self.rows,
            "totalRows": self.total_rows,
            "nextPageToken": self.next_page_token,
        }


def struct_to_dict(struct: Any) -> dict[str, Any]:
    """A ``google.protobuf.Struct`` as a dict, with whole numbers as ints (Struct
    carries every number as a double, so ``source_row`` would read ``3.0``)."""
    return _ints(json_format.MessageToDict(struct))


def _ints(value: Any) -> Any:
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**53:
        return int(value)
    if isinstance(value, dict):
        return {k: _ints(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_ints(v) for v in value]
    return value


@dataclass
class _Requests:
    """Request building shared by the sync and async resources (no I/O)."""

    project: str
    ingest_defaults: dict[str, Any] = field(default_factory=dict)

    def dataset(self, ref: Any) -> str:
        return names.dataset_name(ref, self.project)

    def parent(self, project: str | None) -> str:
        return names.project_name(project or self.project)

    def create(
        self,
        dataset_id: str,
        display_name: str,
        description: str,
        labels: Mapping[str, str] | None,
        project: str | None,
    ) -> svc.CreateDatasetRequest:
        parent = self.parent(project)
        if dataset_id.startswith("projects/"):
            full = names.dataset_name(dataset_id, self.project)
            parent, dataset_id = full.rsplit("/datasets/", 1)
        return svc.CreateDatasetRequest(
            parent=parent,
            dataset_id=dataset_id,
            dataset=Dataset(
                display_name=display_name, description=description, labels=dict(labels or {})
            ),
        )

    def update(
        self,
        ref: Any,
        display_name: str | None,
        description: str | None,
        labels: Mapping[str, str] | None,
        etag: str | None,
    ) -> svc.UpdateDatasetRequest:
        dataset = Dataset(name=self.dataset(ref), etag=etag or "")
        paths = []
        if display_name is not None:
            dataset.display_name = display_name
            paths.append("display_name")
        if description is not None:
            dataset.description = description
            paths.append("description")
        if labels is not None:
            dataset.labels.update(labels)
            paths.append("labels")
        if not paths:
            raise ConfigurationError("nothing to update: give display_name, description or labels")
        return svc.UpdateDatasetRequest(
            dataset=dataset, update_mask=field_mask_pb2.FieldMask(paths=paths)
        )

    def options(self, options: IngestOptions | None, **kwargs: Any) -> IngestOptions:
        if options is not None:
            if any(v is not None for v in kwargs.values()):
                raise ConfigurationError("pass either options= or individual ingest settings")
            return options
        return build_ingest_options(**kwargs)

    @staticmethod
    def preview_page(version: str, split: str, resp: svc.PreviewDatasetVersionResponse):
        return PreviewPage(
            columns=list(resp.columns),
            rows=[struct_to_dict(r) for r in resp.rows],
            total_rows=resp.total_rows,
            next_page_token=resp.next_page_token,
            split=split,
            version=version,
        )


def _no_versions(dataset: str) -> NotFound:
    return NotFound(f"dataset '{dataset}' has no versions yet")


class DatasetsResource:
    """Datasets of the client's project (sync). Reached as ``client.datasets``."""

    def __init__(self, transport: SyncTransport, project: str) -> None:
        self._t = transport
        self._r = _Requests(project)

    @property
    def _stub(self) -> DatasetServiceStub:
        return self._t.stub(SERVICE, DatasetServiceStub)

    # -- datasets ---------------------------------------------------------------

    def create(
        self,
        dataset_id: str = "",
        display_name: str = "",
        description: str = "",
        labels: Mapping[str, str] | None = None,
        project: str | None = None,
        *,
        timeout: Any = USE_DEFAULT,
    ) -> Dataset:
        """Create an empty dataset (``dataset_id`` generated by the service when empty)."""
        req = self._r.create(dataset_id, display_name, description, labels, project)
        return self._t.call(self._stub.CreateDataset, req, idempotent=False, timeout=timeout)

    def get(self, dataset: Any, *, timeout: Any = USE_DEFAULT) -> Dataset:
        req = svc.GetDatasetRequest(name=self._r.dataset(dataset))
        return self._t.call(self._stub.GetDataset, req, idempotent=True, timeout=timeout)

    def list(
        self,
        *,
        filter: str = "",
        page_size: int | None = None,
        limit: int | None = None,
        project: str | None = None,
        timeout: Any = USE_DEFAULT,
    ) -> Iterator[Dataset]:
        """Iterate over all datasets, newest first, fetching pages as needed."""
        parent = self._r.parent(project)

        def fetch(token: str) -> svc.ListDatasetsResponse:
            req = svc.ListDatasetsRequest(
                parent=parent, page_size=page_size or 0, page_token=token, filter=filter
            )
            return self._t.call(self._stub.ListDatasets, req, idempotent=True, timeout=timeout)

        return iterate_pages(fetch, "datasets", limit=limit)

    def update(
        self,
        dataset: Any,
        *,
        display_name: str | None = None,
        description: str | None = None,
        labels: Mapping[str, str] | None = None,
        etag: str | None = None,
        timeout: Any = USE_DEFAULT,
    ) -> Dataset:
        """Change only the fields given (the update mask is built from them)."""
        req = self._r.update(dataset, display_name, description, labels, etag)
        return self._t.call(self._stub.UpdateDataset, req, idempotent=False, timeout=timeout)

    def delete(
        self, dataset: Any, force: bool = False, *, etag: str = "", timeout: Any = USE_DEFAULT
    ) -> None:
        """Delete a dataset; ``force`` also deletes its versions and their bytes."""
        req = svc.DeleteDatasetRequest(name=self._r.dataset(dataset), force=force, etag=etag)
        self._t.call(self._stub.DeleteDataset, req, idempotent=True, timeout=timeout)

    # -- versions ---------------------------------------------------------------

    def upload(
        self,
        dataset: Any,
        source: Source,
        *,
        file_name: str | None = None,
        format: Any = None,
        task: Any = None,
        column_mapping: Mapping[str, str] | Any = None,
        split: Mapping[str, Any] | Any = None,
        pii_handling: Any = None,
        tokenizer_model: str | None = None,
        options: IngestOptions | None = None,
        chunk_size: int = DEFAULT_CHUNK_SIZE,
        progress: Progress | None = None,
        timeout: float | None = None,
    ) -> DatasetVersion:
        """Stream a file (path or binary file object) as a new version of ``dataset``.

        The file is read ``chunk_size`` bytes at a time; ``progress(bytes_sent, total)``
        is called after each chunk (``total`` is None when the size is unknown).
        Uploads are never retried. No deadline unless ``timeout`` is given.
        """
        opts = self._r.options(
            options,
            file_name=file_name,
            format=format,
            task=task,
            column_mapping=column_mapping,
            split=split,
            pii_handling=pii_handling,
            tokenizer_model=tokenizer_model,
        )
        stream = UploadStream(
            self._r.dataset(dataset), source, opts, chunk_size=chunk_size, progress=progress
        )
        stream.prepare()  # open errors surface here, not inside gRPC's request thread
        try:
            return self._t.call(
                self._stub.UploadDatasetVersion, iter(stream), idempotent=False, timeout=timeout
            )
        finally:
            stream.close()

    def import_object(
        self,
        dataset: Any,
        source_uri: str,
        *,
        file_name: str | None = None,
        format: Any = None,
        task: Any = None,
        column_mapping: Mapping[str, str] | Any = None,
        split: Mapping[str, Any] | Any = None,
        pii_handling: Any = None,
        tokenizer_model: str | None = None,
        options: IngestOptions | None = None,
        timeout: float | None = None,
    ) -> DatasetVersion:
        """Create a version from ``s3://bucket/projects/{project}/imports/…``."""
        opts = self._r.options(
            options,
            file_name=file_name,
            format=format,
            task=task,
            column_mapping=column_mapping,
            split=split,
            pii_handling=pii_handling,
            tokenizer_model=tokenizer_model,
        )
        req = svc.ImportDatasetVersionRequest(
            parent=self._r.dataset(dataset), source_uri=source_uri, options=opts
        )
        return self._t.call(self._stub.ImportDatasetVersion, req, idempotent=False, timeout=timeout)

    def versions(
        self,
        dataset: Any,
        *,
        filter: str = "",
        page_size: int | None = None,
        limit: int | None = None,
        timeout: Any = USE_DEFAULT,
    ) -> Iterator[DatasetVersion]:
        """Iterate over a dataset's versions, newest first, quality reports included."""
        parent = self._r.dataset(dataset)

        def fetch(token: str) -> svc.ListDatasetVersionsResponse:
            req = svc.ListDatasetVersionsRequest(
                parent=parent, page_size=page_size or 0, page_token=token, filter=filter
            )
            return self._t.call(
                self._stub.ListDatasetVersions, req, idempotent=True, timeout=timeout
            )

        return iterate_pages(fetch, "dataset_versions", limit=limit)

    def resolve_version(self, version: Any) -> str:
        """Full name of a version reference; ``DATASET@latest`` asks the service."""
        parent, vid = names.parse_version(version, self._r.project)
        if vid != names.LATEST:
            return f"{parent}/versions/{vid}"
        latest = self.get(parent).latest_version
        if not latest:
            raise _no_versions(parent)
        return latest

    def get_version(self, version: Any, *, timeout: Any = USE_DEFAULT) -> DatasetVersion:
        req = svc.GetDatasetVersionRequest(name=self.resolve_version(version))
        return self._t.call(self._stub.GetDatasetVersion, req, idempotent=True, timeout=timeout)

    def delete_version(self, version: Any, *, timeout: Any = USE_DEFAULT) -> None:
        """Delete a version and its bytes."""
        req = svc.DeleteDatasetVersionRequest(name=self.resolve_version(version))
        self._t.call(self._stub.DeleteDatasetVersion, req, idempotent=True, timeout=timeout)

    def preview(
        self,
        version: Any,
        split: str = "train",
        page_size: int = 20,
        page_token: str = "",
        *,
        timeout: Any = USE_DEFAULT,
    ) -> PreviewPage:
        """One page of canonical rows (dicts keyed by column) of ``split``."""
        name = self.resolve_version(version)
        req = svc.PreviewDatasetVersionRequest(
            name=name, split=split, page_size=page_size, page_token=page_token
        )
        resp = self._t.call(self._stub.PreviewDatasetVersion, req, idempotent=True, timeout=timeout)
        return self._r.preview_page(name, split, resp)

    def iter_rows(
        self, version: Any, split: str = "train", *, page_size: int = 500
    ) -> Iterator[dict[str, Any]]:
        """Every canonical row of ``split``, fetched page by page as iterated."""
        name = self.resolve_version(version)
        token = ""
        while True:
            page = self.preview(name, split=split, page_size=page_size, page_token=token)
            yield from page.rows
            token = page.next_page_token
            if not token:
                return


class AsyncDatasetsResource:
    """The grpc.aio twin of :class:`DatasetsResource` (``AsyncClient.datasets``)."""

    def __init__(self, transport: AsyncTransport, project: str) -> None:
        self._t = transport
        self._r = _Requests(project)

    @property
    def _stub(self) -> DatasetServiceStub:
        return self._t.stub(SERVICE, DatasetServiceStub)

    async def create(
        self,
        dataset_id: str = "",
        display_name: str = "",
        description: str = "",
        labels: Mapping[str, str] | None = None,
        project: str | None = None,
        *,
        timeout: Any = USE_DEFAULT,
    ) -> Dataset:
        req = self._r.create(dataset_id, display_name, description, labels, project)
        return await self._t.call(self._stub.CreateDataset, req, idempotent=False, timeout=timeout)

    async def get(self, dataset: Any, *, timeout: Any = USE_DEFAULT) -> Dataset:
        req = svc.GetDatasetRequest(name=self._r.dataset(dataset))
        return await self._t.call(self._stub.GetDataset, req, idempotent=True, timeout=timeout)

    def list(
        self,
        *,
        filter: str = "",
        page_size: int | None = None,
        limit: int | None = None,
        project: str | None = None,
        timeout: Any = USE_DEFAULT,
    ) -> AsyncIterator[Dataset]:
        """``async for d in client.datasets.list(): …``"""
        parent = self._r.parent(project)

        async def fetch(token: str) -> svc.ListDatasetsResponse:
            req = svc.ListDatasetsRequest(
                parent=parent, page_size=page_size or 0, page_token=token, filter=filter
            )
            return await self._t.call(
                self._stub.ListDatasets, req, idempotent=True, timeout=timeout
            )

        return aiterate_pages(fetch, "datasets", limit=limit)

    async def update(
        self,
        dataset: Any,
        *,
        display_name: str | None = None,
        description: str | None = None,
        labels: Mapping[str, str] | None = None,
        etag: str | None = None,
        timeout: Any = USE_DEFAULT,
    ) -> Dataset:
        req = self._r.update(dataset, display_name, description, labels, etag)
        return await self._t.call(self._stub.UpdateDataset, req, idempotent=False, timeout=timeout)

    async def delete(
        self, dataset: Any, force: bool = False, *, etag: str = "", timeout: Any = USE_DEFAULT
    ) -> None:
        req = svc.DeleteDatasetRequest(name=self._r.dataset(dataset), force=force, etag=etag)
        await self._t.call(self._stub.DeleteDataset, req, idempotent=True, timeout=timeout)

    async def upload(
        self,
        dataset: Any,
        source: Source,
        *,
        file_name: str | None = None,
        format: Any = None,
        task: Any = None,
        column_mapping: Mapping[str, str] | Any = None,
        split: Mapping[str, Any] | Any = None,
        pii_handling: Any = None,
        tokenizer_model: str | None = None,
        options: IngestOptions | None = None,
        chunk_size: int = DEFAULT_CHUNK_SIZE,
        progress: Progress | None = None,
        timeout: float | None = None,
    ) -> DatasetVersion:
        """See :meth:`DatasetsResource.upload`; file reads run in a worker thread."""
        opts = self._r.options(
            options,
            file_name=file_name,
            format=format,
            task=task,
            column_mapping=column_mapping,
            split=split,
            pii_handling=pii_handling,
            tokenizer_model=tokenizer_model,
        )
        stream = UploadStream(
            self._r.dataset(dataset), source, opts, chunk_size=chunk_size, progress=progress
        )
        stream.prepare()  # open errors surface here, not inside gRPC's request thread
        try:
            return await self._t.call(
                self._stub.UploadDatasetVersion,
                stream.__aiter__(),
                idempotent=False,
                timeout=timeout,
            )
        finally:
            stream.close()

    async def import_object(
        self,
        dataset: Any,
        source_uri: str,
        *,
        file_name: str | None = None,
        format: Any = None,
        task: Any = None,
        column_mapping: Mapping[str, str] | Any = None,
        split: Mapping[str, Any] | Any = None,
        pii_handling: Any = None,
        tokenizer_model: str | None = None,
        options: IngestOptions | None = None,
        timeout: float | None = None,
    ) -> DatasetVersion:
        opts = self._r.options(
            options,
            file_name=file_name,
            format=format,
            task=task,
            column_mapping=column_mapping,
            split=split,
            pii_handling=pii_handling,
            tokenizer_model=tokenizer_model,
        )
        req = svc.ImportDatasetVersionRequest(
            parent=self._r.dataset(dataset), source_uri=source_uri, options=opts
        )
        return await self._t.call(
            self._stub.ImportDatasetVersion, req, idempotent=False, timeout=timeout
        )

    def versions(
        self,
        dataset: Any,
        *,
        filter: str = "",
        page_size: int | None = None,
        limit: int | None = None,
        timeout: Any = USE_DEFAULT,
    ) -> AsyncIterator[DatasetVersion]:
        parent = self._r.dataset(dataset)

        async def fetch(token: str) -> svc.ListDatasetVersionsResponse:
            req = svc.ListDatasetVersionsRequest(
                parent=parent, page_size=page_size or 0, page_token=token, filter=filter
            )
            return await self._t.call(
                self._stub.ListDatasetVersions, req, idempotent=True, timeout=timeout
            )

        return aiterate_pages(fetch, "dataset_versions", limit=limit)

    async def resolve_version(self, version: Any) -> str:
        parent, vid = names.parse_version(version, self._r.project)
        if vid != names.LATEST:
            return f"{parent}/versions/{vid}"
        latest = (await self.get(parent)).latest_version
        if not latest:
            raise _no_versions(parent)
        return latest

    async def get_version(self, version: Any, *, timeout: Any = USE_DEFAULT) -> DatasetVersion:
        req = svc.GetDatasetVersionRequest(name=await self.resolve_version(version))
        return await self._t.call(
            self._stub.GetDatasetVersion, req, idempotent=True, timeout=timeout
        )

    async def delete_version(self, version: Any, *, timeout: Any = USE_DEFAULT) -> None:
        req = svc.DeleteDatasetVersionRequest(name=await self.resolve_version(version))
        await self._t.call(self._stub.DeleteDatasetVersion, req, idempotent=True, timeout=timeout)

    async def preview(
        self,
        version: Any,
        split: str = "train",
        page_size: int = 20,
        page_token: str = "",
        *,
        timeout: Any = USE_DEFAULT,
    ) -> PreviewPage:
        name = await self.resolve_version(version)
        req = svc.PreviewDatasetVersionRequest(
            name=name, split=split, page_size=page_size, page_token=page_token
        )
        resp = await self._t.call(
            self._stub.PreviewDatasetVersion, req, idempotent=True, timeout=timeout
        )
        return self._r.preview_page(name, split, resp)

    async def iter_rows(
        self, version: Any, split: str = "train", *, page_size: int = 500
    ) -> AsyncIterator[dict[str, Any]]:
        name = await self.resolve_version(version)
        token = ""
        while True:
            page = await self.preview(name, split=split, page_size=page_size, page_token=token)
            for row in page.rows:
                yield row
            token = page.next_page_token
            if not token:
                return
