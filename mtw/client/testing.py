"""An in-memory DatasetService for tests of code that uses the SDK or the CLI.

    with serve_fake() as fake:
        client = mtw.Client(fake.endpoint, "any-key")
        client.datasets.create("d")

It keeps datasets and versions in dicts, records what it received (metadata, upload
chunk sizes), can be told to fail the next calls of a method with a status code, and
rejects uploads containing a line with ``BAD`` (INVALID_ARGUMENT with one BadRequest
violation per bad line and ``ErrorInfo.metadata["total_errors"]``). It is not the
real service: no validation, profiling or storage beyond a toy report.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import io
import threading
from collections import defaultdict
from collections.abc import Iterator
from concurrent import futures
from dataclasses import dataclass, field

import grpc
from google.protobuf import empty_pb2, struct_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from mtw.common.v1 import task_pb2
from mtw.dataset.v1 import dataset_pb2, dataset_version_pb2, quality_report_pb2
from mtw.dataset.v1 import dataset_service_pb2 as svc
from mtw.dataset.v1 import dataset_service_pb2_grpc as svc_grpc

MAX_VIOLATIONS = 100


def _abort(context: grpc.ServicerContext, code: int, message: str, *details) -> None:
    status = status_pb2.Status(code=code, message=message)
    for d in details:
        status.details.add().Pack(d)
    context.abort_with_status(rpc_status.to_status(status))


@dataclass
class FakeDatasetService(svc_grpc.DatasetServiceServicer):
    """State and behaviour of the fake; inspect its attributes in assertions."""

    api_key: str | None = None  # when set, other keys get UNAUTHENTICATED
    datasets: dict[str, dataset_pb2.Dataset] = field(default_factory=dict)
    versions: dict[str, list[dataset_version_pb2.DatasetVersion]] = field(
        default_factory=lambda: defaultdict(list)
    )
    uploads: list[dict] = field(default_factory=list)
    calls: list[tuple[str, dict[str, str]]] = field(default_factory=list)
    failures: dict[str, list[grpc.StatusCode]] = field(default_factory=lambda: defaultdict(list))
    rows: dict[str, list[dict]] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)
    endpoint: str = ""

    def fail_next(self, method: str, *codes: grpc.StatusCode) -> None:
        """Make the next ``len(codes)`` calls of ``method`` fail with these codes."""
        self.failures[method].extend(codes)

    def _enter(self, method: str, context: grpc.ServicerContext) -> None:
        md = {k: v for k, v in context.invocation_metadata()}
        with self.lock:
            self.calls.append((method, md))
            pending = self.failures.get(method)
            code = pending.pop(0) if pending else None
        if code is not None:
            context.abort(code, f"injected {code.name}")
        auth = md.get("authorization", "")
        if not auth.startswith("Bearer ") or (
            self.api_key is not None and auth != f"Bearer {self.api_key}"
        ):
            _abort(context, code_pb2.UNAUTHENTICATED, "missing or unknown API key")

    def _dataset(self, name: str, context: grpc.ServicerContext) -> dataset_pb2.Dataset:
        if name not in self.datasets:
            _abort(
                context,
                code_pb2.NOT_FOUND,
                f"dataset '{name}' was not found",
                error_details_pb2.ErrorInfo(reason="DATASET_NOT_FOUND", domain="mtw.ai"),
            )
        return self.datasets[name]

    def _version(self, name: str, context: grpc.ServicerContext):
        parent = name.partition("/versions/")[0]
        for v in self.versions.get(parent, []):
            if v.name == name:
                return v
        _abort(context, code_pb2.NOT_FOUND, f"dataset version '{name}' was not found")

    # -- datasets -------------------------------------------------------------

    def CreateDataset(self, request, context):
        self._enter("CreateDataset", context)
        name = f"{request.parent}/datasets/{request.dataset_id or 'generated'}"
        if name in self.datasets:
            _abort(context, code_pb2.ALREADY_EXISTS, f"dataset '{name}' already exists")
        d = dataset_pb2.Dataset()
        d.CopyFrom(request.dataset)
        d.name = name
        d.create_time.GetCurrentTime()
        d.update_time.CopyFrom(d.create_time)
        self.datasets[name] = d
        return d

    def GetDataset(self, request, context):
        self._enter("GetDataset", context)
        return self._dataset(request.name, context)

    def ListDatasets(self, request, context):
        self._enter("ListDatasets", context)
        items = [d for n, d in self.datasets.items() if n.startswith(request.parent + "/")]
        return self._page(items, request, svc.ListDatasetsResponse, "datasets")

    @staticmethod
    def _page(items, request, response_cls, field_name):
        size = request.page_size or 50
        start = int(request.page_token or 0)
        chunk = items[start : start + size]
        token = str(start + size) if start + size < len(items) else ""
        return response_cls(**{field_name: chunk, "next_page_token": token})

    def UpdateDataset(self, request, context):
        self._enter("UpdateDataset", context)
        d = self._dataset(request.dataset.name, context)
        for path in request.update_mask.paths:
            if path == "labels":
                d.labels.clear()
                d.labels.update(request.dataset.labels)
            else:
                setattr(d, path, getattr(request.dataset, path))
        return d

    def DeleteDataset(self, request, context):
        self._enter("DeleteDataset", context)
        self._dataset(request.name, context)
        if self.versions.get(request.name) and not request.force:
            _abort(context, code_pb2.FAILED_PRECONDITION, "dataset has versions; use force")
        del self.datasets[request.name]
        self.versions.pop(request.name, None)
        return empty_pb2.Empty()

    # -- versions -------------------------------------------------------------

    def UploadDatasetVersion(self, request_iterator, context):
        self._enter("UploadDatasetVersion", context)
        first = next(request_iterator, None)
        if first is None or not first.HasField("header"):
            _abort(context, code_pb2.INVALID_ARGUMENT, "the first message must be the header")
        header = first.header
        self._dataset(header.parent, context)
        sha = hashlib.sha256()
        sizes: list[int] = []
        body = io.BytesIO()
        for msg in request_iterator:
            if msg.HasField("header"):
                _abort(context, code_pb2.INVALID_ARGUMENT, "a second header")
            sizes.append(len(msg.chunk))
            sha.update(msg.chunk)
            body.write(msg.chunk)
        self.uploads.append({"header": header, "chunk_sizes": sizes})
        text = body.getvalue().decode("utf-8", errors="replace")
        bad = [i for i, line in enumerate(text.splitlines(), start=1) if "BAD" in line]
        if bad:
            violations = [
                error_details_pb2.BadRequest.FieldViolation(
                    field=f"line:{i}:label", description="label is empty"
                )
                for i in bad[:MAX_VIOLATIONS]
            ]
            _abort(
                context,
                code_pb2.INVALID_ARGUMENT,
                f"the file has {len(bad)} invalid rows",
                error_details_pb2.BadRequest(field_violations=violations),
                error_details_pb2.ErrorInfo(
                    reason="INVALID_ROWS", domain="mtw.ai", metadata={"total_errors": str(len(bad))}
                ),
            )
        return self._make_version(header.parent, header.options, text, sha.hexdigest(), sum(sizes))

    def _make_version(self, parent, options, text, sha256, size):
        rows = list(csv.DictReader(io.StringIO(text)))
        with self.lock:
            number = len(self.versions[parent]) + 1
            v = dataset_version_pb2.DatasetVersion(
                name=f"{parent}/versions/{number}",
                format=options.format or dataset_version_pb2.DATA_FORMAT_CSV,
                task=options.task or task_pb2.TASK_SEQUENCE_CLASSIFICATION,
                size_bytes=size,
                sha256=sha256,
                columns=["text", "label", "source_row"],
            )
            v.options.CopyFrom(options)
            v.create_time.GetCurrentTime()
            v.splits.add(name="train", row_count=len(rows))
            report = v.quality_report
            report.row_count = len(rows)
            report.column_count = len(rows[0]) if rows else 0
            counts: dict[str, int] = defaultdict(int)
            for r in rows:
                counts[r.get("label", "")] += 1
            for label, n in sorted(counts.items(), key=lambda kv: -kv[1]):
                report.label_distribution.add(
                    label=label, count=n, fraction=n / len(rows), split_counts={"train": n}
                )
            lengths = [len(r.get("text", "")) for r in rows] or [0]
            report.char_length.min, report.char_length.max = min(lengths), max(lengths)
            report.char_length.rows_measured = len(rows)
            report.char_length.buckets.add(lower=0, upper=max(lengths) + 1, count=len(rows))
            report.warnings.add(
                code="FEW_ROWS",
                severity=quality_report_pb2.SEVERITY_WARNING,
                message=f"only {len(rows)} rows",
            )
            self.versions[parent].append(v)
            self.versions[parent].sort(key=lambda x: -int(x.name.rsplit("/", 1)[1]))
            self.datasets[parent].version_count = len(self.versions[parent])
            self.datasets[parent].latest_version = self.versions[parent][0].name
            self.rows[v.name] = rows
        return v

    def ImportDatasetVersion(self, request, context):
        self._enter("ImportDatasetVersion", context)
        self._dataset(request.parent, context)
        return self._make_version(request.parent, request.options, "text,label\n", "", 0)

    def GetDatasetVersion(self, request, context):
        self._enter("GetDatasetVersion", context)
        return self._version(request.name, context)

    def ListDatasetVersions(self, request, context):
        self._enter("ListDatasetVersions", context)
        self._dataset(request.parent, context)
        items = list(self.versions.get(request.parent, []))
        return self._page(items, request, svc.ListDatasetVersionsResponse, "dataset_versions")

    def DeleteDatasetVersion(self, request, context):
        self._enter("DeleteDatasetVersion", context)
        v = self._version(request.name, context)
        parent = request.name.partition("/versions/")[0]
        self.versions[parent].remove(v)
        return empty_pb2.Empty()

    def PreviewDatasetVersion(self, request, context):
        self._enter("PreviewDatasetVersion", context)
        self._version(request.name, context)
        rows = self.rows.get(request.name, [])
        size = request.page_size or 20
        start = int(request.page_token or 0)
        out = svc.PreviewDatasetVersionResponse(
            columns=["text", "label", "source_row"], total_rows=len(rows)
        )
        for i, r in enumerate(rows[start : start + size], start=start + 1):
            s = struct_pb2.Struct()
            s.update({"text": r.get("text", ""), "label": r.get("label", ""), "source_row": i})
            out.rows.append(s)
        out.next_page_token = str(start + size) if start + size < len(rows) else ""
        return out


@contextlib.contextmanager
def serve_fake(service: FakeDatasetService | None = None) -> Iterator[FakeDatasetService]:
    """Serve a fake on 127.0.0.1 (free port); ``fake.endpoint`` is its address."""
    fake = service or FakeDatasetService()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
    svc_grpc.add_DatasetServiceServicer_to_server(fake, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    fake.endpoint = f"127.0.0.1:{port}"
    try:
        yield fake
    finally:
        server.stop(grace=None)
