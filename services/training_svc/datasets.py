"""What the training service needs of a dataset version, asked of the dataset service
over gRPC with the caller's own API key (DESIGN: never read another service's tables)."""

from __future__ import annotations

from dataclasses import dataclass

import grpc

from mtw.dataset.v1 import dataset_service_pb2, dataset_service_pb2_grpc
from services.common.errors import InvalidArgument, NotFound, Unavailable
from services.training_svc.domain.model import Task


@dataclass(frozen=True)
class VersionInfo:
    name: str
    task: Task
    label_names: tuple[str, ...]
    split_rows: dict[str, int]
    split_uris: dict[str, str]
    mean_tokens_per_row: float  # from the quality report; a char-based guess without tokens

    def rows(self, split: str) -> int:
        return self.split_rows.get(split, 0)

    def uri(self, split: str) -> str:
        return self.split_uris.get(split, "") if self.rows(split) else ""


class DatasetClient:
    def __init__(self, endpoint: str) -> None:
        self.endpoint = endpoint
        self._channel = grpc.aio.insecure_channel(endpoint)
        self._stub = dataset_service_pb2_grpc.DatasetServiceStub(self._channel)

    async def close(self) -> None:
        await self._channel.close()

    async def get_version(self, name: str, api_key: str, field: str) -> VersionInfo:
        try:
            v = await self._stub.GetDatasetVersion(
                dataset_service_pb2.GetDatasetVersionRequest(name=name),
                metadata=(("authorization", f"Bearer {api_key}"),), timeout=30,
            )
        except grpc.aio.AioRpcError as exc:
            if exc.code() == grpc.StatusCode.NOT_FOUND:
                raise NotFound.resource("dataset version", name) from None
            if exc.code() == grpc.StatusCode.INVALID_ARGUMENT:
                raise InvalidArgument.field(field, f"'{name}' is not a dataset version name: {exc.details()}") from None
            raise Unavailable(
                f"the dataset service did not answer for '{name}' ({exc.code().name}); try again",
                reason="DATASET_SERVICE_UNAVAILABLE",
            ) from None
        report = v.quality_report
        if report.token_length.rows_measured:
            mean_tokens = report.token_length.mean
        elif report.char_length.rows_measured:
            mean_tokens = report.char_length.mean / 4  # about four characters a token in English
        else:
            mean_tokens = 128.0
        return VersionInfo(
            name=v.name,
            task=Task(v.task),
            label_names=tuple(v.label_names),
            split_rows={s.name: s.row_count for s in v.splits},
            split_uris={s.name: s.uri for s in v.splits},
            mean_tokens_per_row=float(mean_tokens),
        )
