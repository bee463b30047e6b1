"""gRPC methods of DatasetService: parse the request, call the app, convert the reply."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from google.protobuf import empty_pb2

from mtw.dataset.v1 import dataset_service_pb2 as pb
from mtw.dataset.v1 import dataset_service_pb2_grpc
from services.common.auth import current_principal
from services.common.errors import InvalidArgument
from services.dataset_svc import convert
from services.dataset_svc.app import DatasetApp


class DatasetServicer(dataset_service_pb2_grpc.DatasetServiceServicer):
    def __init__(self, app: DatasetApp) -> None:
        self.app = app

    async def CreateDataset(self, request: pb.CreateDatasetRequest, context):
        d = request.dataset
        dataset = await self.app.create_dataset(
            request.parent, request.dataset_id, d.display_name, d.description, dict(d.labels)
        )
        return convert.dataset_to_proto(dataset)

    async def GetDataset(self, request: pb.GetDatasetRequest, context):
        return convert.dataset_to_proto(await self.app.get_dataset(request.name))

    async def ListDatasets(self, request: pb.ListDatasetsRequest, context):
        page = await self.app.list_datasets(
            request.parent, request.page_size, request.page_token, request.filter
        )
        return pb.ListDatasetsResponse(
            datasets=[convert.dataset_to_proto(d) for d in page.items],
            next_page_token=page.next_page_token,
        )

    async def UpdateDataset(self, request: pb.UpdateDatasetRequest, context):
        d = request.dataset
        values = {"display_name": d.display_name, "description": d.description, "labels": dict(d.labels)}
        dataset = await self.app.update_dataset(d.name, list(request.update_mask.paths), values, d.etag)
        return convert.dataset_to_proto(dataset)

    async def DeleteDataset(self, request: pb.DeleteDatasetRequest, context):
        await self.app.delete_dataset(request.name, request.force, request.etag)
        return empty_pb2.Empty()

    async def UploadDatasetVersion(self, request_iterator: AsyncIterator[pb.UploadDatasetVersionRequest], context):
        try:
            return await self._upload(request_iterator)
        except Exception:
            await _read_rest(request_iterator)
            raise

    async def _upload(self, request_iterator: AsyncIterator[pb.UploadDatasetVersionRequest]):
        principal = current_principal()
        first = await anext(request_iterator, None)
        if first is None or first.WhichOneof("part") != "header":
            raise InvalidArgument.field("header", "the first message of an upload must be the header")
        header = first.header

        async def chunks() -> AsyncIterator[bytes]:
            async for message in request_iterator:
                if message.WhichOneof("part") != "chunk":
                    raise InvalidArgument.field("header", "only the first message may be a header")
                yield message.chunk

        version = await self.app.upload_version(
            principal, header.parent, convert.ingest_options_from_proto(header.options),
            header.size_bytes, chunks(),
        )
        return convert.version_to_proto(version)

    async def ImportDatasetVersion(self, request: pb.ImportDatasetVersionRequest, context):
        version = await self.app.import_version(
            current_principal(), request.parent, request.source_uri,
            convert.ingest_options_from_proto(request.options),
        )
        return convert.version_to_proto(version)

    async def GetDatasetVersion(self, request: pb.GetDatasetVersionRequest, context):
        return convert.version_to_proto(await self.app.get_version(request.name))

    async def ListDatasetVersions(self, request: pb.ListDatasetVersionsRequest, context):
        page = await self.app.list_versions(
            request.parent, request.page_size, request.page_token, request.filter
        )
        return pb.ListDatasetVersionsResponse(
            dataset_versions=[convert.version_to_proto(v) for v in page.items],
            next_page_token=page.next_page_token,
        )

    async def DeleteDatasetVersion(self, request: pb.DeleteDatasetVersionRequest, context):
        await self.app.delete_version(request.name)
        return empty_pb2.Empty()

    async def PreviewDatasetVersion(self, request: pb.PreviewDatasetVersionRequest, context):
        page = await self.app.preview(request.name, request.split, request.page_size, request.page_token)
        return convert.preview_to_proto(page)


# A refusal is answered after reading (and dropping) what the client is still sending, up
# to these bounds: a gRPC client whose write meets an already-ended call reports its own
# "Internal error from Core" in place of our status (grpc.aio), so a small upload refused
# at its header would sometimes reach the user as INTERNAL instead of its real reason.
LINGER_BYTES = 8 * 2**20
LINGER_SECONDS = 2.0


async def _read_rest(request_iterator: AsyncIterator[pb.UploadDatasetVersionRequest]) -> None:
    read = 0
    with contextlib.suppress(Exception):
        async with asyncio.timeout(LINGER_SECONDS):
            async for message in request_iterator:
                read += len(message.chunk)
                if read > LINGER_BYTES:
                    return
