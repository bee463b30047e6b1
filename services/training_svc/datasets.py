"""What the training service needs of a dataset version, asked of the dataset service
over gRPC with the caller's own API key (DESIGN: never read another service's tables)."""

from __future__ import annotations

from dataclasses import dataclass

import grpc

from mtw.dataset.v1 import dataset_service_pb2, dataset_service_pb2_grpc
from services.common.peers import ask, bearer
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
    def __init__(self, channel: grpc.aio.Channel) -> None:
        self._stub = dataset_service_pb2_grpc.DatasetServiceStub(channel)

    async def get_version(self, name: str, api_key: str, field: str) -> VersionInfo:
        v = await ask(
            self._stub.GetDatasetVersion(dataset_service_pb2.GetDatasetVersionRequest(name=name),
                                         metadata=bearer(api_key), timeout=30),
            service="dataset", kind="dataset version", name=name, field=field,
        )
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
