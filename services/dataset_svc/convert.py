"""Protobuf <-> domain objects for the dataset service, in one place."""

from __future__ import annotations

from google.protobuf import struct_pb2, timestamp_pb2

from mtw.dataset.v1 import dataset_pb2, dataset_service_pb2, dataset_version_pb2, quality_report_pb2
from services.dataset_svc import preview
from services.dataset_svc.domain import model as m


def _timestamp(value) -> timestamp_pb2.Timestamp:
    ts = timestamp_pb2.Timestamp()
    ts.FromDatetime(value)
    return ts


# --- requests -> domain ----------------------------------------------------------------


def ingest_options_from_proto(p: dataset_version_pb2.IngestOptions) -> m.IngestOptions:
    split = p.split
    defaults = m.SplitSettings()
    return m.IngestOptions(
        file_name=p.file_name,
        format=m.DataFormat(p.format),
        task=m.Task(p.task),
        column_mapping=m.ColumnMapping(
            text=p.column_mapping.text, label=p.column_mapping.label,
            messages=p.column_mapping.messages, prompt=p.column_mapping.prompt,
            input=p.column_mapping.input, response=p.column_mapping.response,
        ),
        split=m.SplitSettings(
            validation_fraction=(split.validation_fraction if split.HasField("validation_fraction")
                                 else defaults.validation_fraction),
            test_fraction=split.test_fraction if split.HasField("test_fraction") else defaults.test_fraction,
            seed=split.seed if split.HasField("seed") else defaults.seed,
            split_column=split.split_column,
            group_column=split.group_column,
            stratify=split.stratify if split.HasField("stratify") else defaults.stratify,
        ),
        pii_handling=m.PiiHandling(p.pii_handling) if p.pii_handling else m.PiiHandling.REPORT,
        tokenizer_model=p.tokenizer_model,
    )


# --- domain -> responses ---------------------------------------------------------------


def dataset_to_proto(d: m.Dataset) -> dataset_pb2.Dataset:
    return dataset_pb2.Dataset(
        name=d.name,
        display_name=d.display_name,
        description=d.description,
        labels=d.labels,
        version_count=d.version_count,
        latest_version=f"{d.name}/versions/{d.latest_version}" if d.latest_version else "",
        size_bytes=d.size_bytes,
        create_time=_timestamp(d.create_time),
        update_time=_timestamp(d.update_time),
        etag=d.etag,
    )


def ingest_options_to_proto(o: m.IngestOptions) -> dataset_version_pb2.IngestOptions:
    cm = o.column_mapping
    return dataset_version_pb2.IngestOptions(
        file_name=o.file_name,
        format=o.format.value,
        task=o.task.value,
        column_mapping=dataset_version_pb2.ColumnMapping(
            text=cm.text, label=cm.label, messages=cm.messages, prompt=cm.prompt,
            input=cm.input, response=cm.response,
        ),
        split=dataset_version_pb2.SplitSettings(
            validation_fraction=o.split.validation_fraction,
            test_fraction=o.split.test_fraction,
            seed=o.split.seed,
            split_column=o.split.split_column,
            group_column=o.split.group_column,
            stratify=o.split.stratify,
        ),
        pii_handling=o.pii_handling.value,
        tokenizer_model=o.tokenizer_model,
    )


def _histogram(h: m.LengthHistogram) -> quality_report_pb2.LengthHistogram:
    return quality_report_pb2.LengthHistogram(
        buckets=[quality_report_pb2.LengthHistogram.Bucket(lower=b.lower, upper=b.upper, count=b.count)
                 for b in h.buckets],
        min=h.min, max=h.max, mean=h.mean, p50=h.p50, p95=h.p95, rows_measured=h.rows_measured,
    )


def quality_report_to_proto(r: m.QualityReport) -> quality_report_pb2.QualityReport:
    report = quality_report_pb2.QualityReport(
        row_count=r.row_count,
        column_count=r.column_count,
        columns=[quality_report_pb2.ColumnProfile(name=c.name, mapped_to=c.mapped_to,
                                                  empty_count=c.empty_count) for c in r.columns],
        label_distribution=[
            quality_report_pb2.LabelCount(label=lc.label, count=lc.count, fraction=lc.fraction,
                                          split_counts=lc.split_counts)
            for lc in r.label_distribution
        ],
        char_length=_histogram(r.char_length),
        tokenizer_model=r.tokenizer_model,
        exact_duplicate_rows=r.exact_duplicate_rows,
        near_duplicate_rows=r.near_duplicate_rows,
        cross_split_duplicate_rows=r.cross_split_duplicate_rows,
        pii=[quality_report_pb2.PiiFinding(kind=f.kind.value, match_count=f.match_count,
                                           row_count=f.row_count, example_rows=f.example_rows,
                                           redacted=f.redacted) for f in r.pii],
        warnings=[quality_report_pb2.QualityWarning(code=w.code, severity=w.severity.value,
                                                    message=w.message, example_rows=w.example_rows)
                  for w in r.warnings],
        had_byte_order_mark=r.had_byte_order_mark,
    )
    if r.token_length is not None:
        report.token_length.CopyFrom(_histogram(r.token_length))
    return report


def version_to_proto(v: m.DatasetVersion) -> dataset_version_pb2.DatasetVersion:
    return dataset_version_pb2.DatasetVersion(
        name=v.name,
        options=ingest_options_to_proto(v.options),
        format=v.format.value,
        task=v.task.value,
        size_bytes=v.size_bytes,
        sha256=v.sha256,
        raw_uri=v.raw_uri,
        columns=v.columns,
        label_names=v.label_names,
        splits=[dataset_version_pb2.SplitInfo(name=s.name, row_count=s.row_count, uri=s.uri)
                for s in v.splits],
        quality_report=quality_report_to_proto(v.quality_report),
        create_time=_timestamp(v.create_time),
        creator=v.creator,
    )


def preview_to_proto(page: preview.PreviewPage) -> dataset_service_pb2.PreviewDatasetVersionResponse:
    rows = []
    for row in page.rows:
        s = struct_pb2.Struct()
        s.update(row)
        rows.append(s)
    return dataset_service_pb2.PreviewDatasetVersionResponse(
        columns=page.columns, rows=rows, total_rows=page.total_rows,
        next_page_token=page.next_page_token,
    )
