"""Uploads through the real service: stored, validated, split, profiled, previewable."""

from __future__ import annotations

import hashlib
import io
import json

import grpc
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from mtw.common.v1 import task_pb2
from mtw.dataset.v1 import dataset_service_pb2 as pb
from mtw.dataset.v1 import dataset_version_pb2 as vpb
from mtw.dataset.v1 import quality_report_pb2 as qpb

from .conftest import SHARED_DATA


async def test_brown_corpus_becomes_a_classification_version(dataset_svc):
    dataset = await dataset_svc.create_dataset()
    data = (SHARED_DATA / "brown_genres.csv").read_bytes()
    version = await dataset_svc.upload(dataset.name, data, file_name="brown_genres.csv")

    assert version.name == f"{dataset.name}/versions/1"
    assert version.format == vpb.DATA_FORMAT_CSV
    assert version.task == task_pb2.TASK_SEQUENCE_CLASSIFICATION
    assert version.size_bytes == len(data)
    assert version.sha256 == hashlib.sha256(data).hexdigest()
    assert len(version.label_names) == 15
    report = version.quality_report
    assert report.row_count == 8368
    assert sum(s.row_count for s in version.splits) == 8368
    by_name = {s.name: s.row_count for s in version.splits}
    assert by_name["train"] == pytest.approx(8368 * 0.8, rel=0.03)
    assert len(report.label_distribution) == 15
    assert report.char_length.max > report.char_length.min > 0
    # The raw upload and the canonical splits are really in the bucket.
    keys = await dataset_svc.stored_keys(f"datasets/projects/alpha/datasets/{dataset.name.rsplit('/', 1)[-1]}/")
    assert any(k.endswith("/raw/brown_genres.csv") for k in keys)
    assert sum(k.endswith(".parquet") for k in keys) == 3

    got = await dataset_svc.stub.GetDatasetVersion(pb.GetDatasetVersionRequest(name=version.name),
                                                   metadata=dataset_svc.auth())
    assert got == version
    ds = await dataset_svc.stub.GetDataset(pb.GetDatasetRequest(name=dataset.name), metadata=dataset_svc.auth())
    assert ds.version_count == 1 and ds.latest_version == version.name and ds.size_bytes > len(data)


async def test_chat_jsonl_becomes_chat_sft_and_previews(dataset_svc):
    dataset = await dataset_svc.create_dataset()
    data = (SHARED_DATA / "chatterbot_qa_en.jsonl").read_bytes()
    version = await dataset_svc.upload(dataset.name, data, file_name="chatterbot_qa_en.jsonl")
    assert version.format == vpb.DATA_FORMAT_JSONL
    assert version.task == task_pb2.TASK_CHAT_SFT
    assert version.quality_report.row_count == 898
    assert "messages" in version.columns

    first = await dataset_svc.stub.PreviewDatasetVersion(
        pb.PreviewDatasetVersionRequest(name=version.name, split="train", page_size=7),
        metadata=dataset_svc.auth(),
    )
    assert len(first.rows) == 7 and first.next_page_token
    roles = [m["role"] for m in first.rows[0]["messages"]]
    assert roles[0] in ("user", "system") and roles[-1] == "assistant"
    seen, token = len(first.rows), first.next_page_token
    while token:
        page = await dataset_svc.stub.PreviewDatasetVersion(
            pb.PreviewDatasetVersionRequest(name=version.name, split="train", page_size=200, page_token=token),
            metadata=dataset_svc.auth(),
        )
        seen, token = seen + len(page.rows), page.next_page_token
    assert seen == first.total_rows == next(s.row_count for s in version.splits if s.name == "train")


async def test_every_format_is_read(dataset_svc, tmp_path):
    rows = [{"text": f"sample number {i} about {'cats' if i % 2 else 'dogs'}", "label": "a" if i % 2 else "b"}
            for i in range(60)]
    buf = io.BytesIO()
    pq.write_table(pa.Table.from_pylist(rows), buf)
    cases = {
        "data.tsv": ("text\tlabel\n" + "".join(f"{r['text']}\t{r['label']}\n" for r in rows)).encode(),
        "data.json": json.dumps(rows).encode(),
        "data.parquet": buf.getvalue(),
        "alpaca.jsonl": "".join(
            json.dumps({"instruction": f"Say {i}", "input": "", "output": f"{i}"}) + "\n" for i in range(60)
        ).encode(),
        "notes.txt": "\n\n".join(f"Paragraph {i} of a plain text corpus." for i in range(60)).encode(),
    }
    expected = {
        "data.tsv": (vpb.DATA_FORMAT_TSV, task_pb2.TASK_SEQUENCE_CLASSIFICATION),
        "data.json": (vpb.DATA_FORMAT_JSON, task_pb2.TASK_SEQUENCE_CLASSIFICATION),
        "data.parquet": (vpb.DATA_FORMAT_PARQUET, task_pb2.TASK_SEQUENCE_CLASSIFICATION),
        "alpaca.jsonl": (vpb.DATA_FORMAT_JSONL, task_pb2.TASK_CHAT_SFT),
        "notes.txt": (vpb.DATA_FORMAT_TEXT, task_pb2.TASK_CAUSAL_LM),
    }
    dataset = await dataset_svc.create_dataset()
    for name, data in cases.items():
        version = await dataset_svc.upload(dataset.name, data, file_name=name)
        assert (version.format, version.task) == expected[name], name
        assert version.quality_report.row_count == 60, name


async def test_column_mapping_and_group_split(dataset_svc):
    lines = ["sentence,genre,doc"] + [f"line {i} of doc {i // 10},g{i % 3},d{i // 10}" for i in range(300)]
    options = vpb.IngestOptions(
        column_mapping=vpb.ColumnMapping(text="sentence", label="genre"),
        split=vpb.SplitSettings(group_column="doc", seed=7),
    )
    dataset = await dataset_svc.create_dataset()
    version = await dataset_svc.upload(dataset.name, "\n".join(lines).encode(), options=options)
    assert version.task == task_pb2.TASK_SEQUENCE_CLASSIFICATION
    assert version.options.column_mapping.text == "sentence"
    # Every document lands in exactly one split.
    docs_by_split = {}
    for split in version.splits:
        page = await dataset_svc.stub.PreviewDatasetVersion(
            pb.PreviewDatasetVersionRequest(name=version.name, split=split.name, page_size=500),
            metadata=dataset_svc.auth(),
        )
        docs_by_split[split.name] = {(int(r["source_row"]) - 1) // 10 for r in page.rows}
    all_docs = [d for docs in docs_by_split.values() for d in docs]
    assert len(all_docs) == len(set(all_docs))


async def test_quality_report_finds_duplicates_and_pii(dataset_svc):
    rows = ["text,label"]
    rows += [f"unique sentence number {i},{'x' if i % 2 else 'y'}" for i in range(100)]
    rows += ["the same sentence again,x"] * 60
    rows += ["write to jane.doe@example.com please,y", "card 4111 1111 1111 1111 on file,x"]
    dataset = await dataset_svc.create_dataset()
    version = await dataset_svc.upload(dataset.name, "\n".join(rows).encode())
    report = version.quality_report
    assert report.exact_duplicate_rows == 59
    kinds = {f.kind: f for f in report.pii}
    assert set(kinds) >= {qpb.PII_KIND_EMAIL, qpb.PII_KIND_PAYMENT_CARD}
    assert any(w.code == "DUPLICATE_ROWS" for w in report.warnings)
    assert any(w.code == "PII_FOUND" for w in report.warnings)


async def test_redacted_pii_never_reaches_the_canonical_copy(dataset_svc):
    rows = ["text,label"] + [f"mail user{i}@example.org now,{'a' if i % 2 else 'b'}" for i in range(40)]
    options = vpb.IngestOptions(pii_handling=vpb.PII_HANDLING_REDACT)
    dataset = await dataset_svc.create_dataset()
    version = await dataset_svc.upload(dataset.name, "\n".join(rows).encode(), options=options)
    page = await dataset_svc.stub.PreviewDatasetVersion(
        pb.PreviewDatasetVersionRequest(name=version.name, page_size=100), metadata=dataset_svc.auth()
    )
    assert page.rows and all("@example.org" not in r["text"] for r in page.rows)
    assert all(f.redacted for f in version.quality_report.pii)


async def test_import_from_an_object_in_the_store(dataset_svc):
    data = (SHARED_DATA / "brown_genres.csv").read_bytes()[:200_000].rsplit(b"\n", 1)[0]
    key = "projects/alpha/imports/brown-head.csv"
    await dataset_svc.running.objects.put_bytes(key, data)
    dataset = await dataset_svc.create_dataset()
    version = await dataset_svc.stub.ImportDatasetVersion(
        pb.ImportDatasetVersionRequest(parent=dataset.name, source_uri=dataset_svc.running.objects.uri(key)),
        metadata=dataset_svc.auth(),
    )
    assert version.sha256 == hashlib.sha256(data).hexdigest()
    assert version.options.file_name == "brown-head.csv"
    # Another project's import prefix is out of reach.
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await dataset_svc.stub.ImportDatasetVersion(
            pb.ImportDatasetVersionRequest(parent=dataset.name,
                                           source_uri=dataset_svc.running.objects.uri("projects/beta/imports/x.csv")),
            metadata=dataset_svc.auth(),
        )
    assert err.value.code() == grpc.StatusCode.NOT_FOUND


async def test_delete_version_and_dataset_remove_the_bytes(dataset_svc):
    dataset = await dataset_svc.create_dataset()
    dataset_id = dataset.name.rsplit("/", 1)[-1]
    prefix = f"datasets/projects/alpha/datasets/{dataset_id}/"
    data = b"text\n" + b"".join(b"line %d\n" % i for i in range(50))
    v1 = await dataset_svc.upload(dataset.name, data, file_name="a.csv")
    await dataset_svc.upload(dataset.name, data, file_name="b.csv")
    assert len(await dataset_svc.stored_keys(prefix)) >= 4

    await dataset_svc.stub.DeleteDatasetVersion(pb.DeleteDatasetVersionRequest(name=v1.name),
                                                metadata=dataset_svc.auth())
    assert not any("/raw/a.csv" in k for k in await dataset_svc.stored_keys(prefix))
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await dataset_svc.stub.DeleteDataset(pb.DeleteDatasetRequest(name=dataset.name), metadata=dataset_svc.auth())
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    await dataset_svc.stub.DeleteDataset(pb.DeleteDatasetRequest(name=dataset.name, force=True),
                                         metadata=dataset_svc.auth())
    assert await dataset_svc.stored_keys(prefix) == []
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await dataset_svc.stub.GetDataset(pb.GetDatasetRequest(name=dataset.name), metadata=dataset_svc.auth())
    assert err.value.code() == grpc.StatusCode.NOT_FOUND

    # Who did what is on record, under the caller's project and key.
    audit = await dataset_svc.running.pool.fetch(
        "SELECT action, project, key_id FROM iam.audit_log WHERE resource LIKE $1 ORDER BY id",
        f"{dataset.name}%",
    )
    assert [r["action"] for r in audit] == [
        "dataset.create", "dataset_version.create", "dataset_version.create",
        "dataset_version.delete", "dataset.delete",
    ]
    assert {(r["project"], bool(r["key_id"])) for r in audit} == {("alpha", True)}


async def test_token_lengths_with_a_catalog_tokenizer(dataset_svc):
    rows = ["text,label"] + [f"{'word ' * (i % 30 + 1)}end,{'a' if i % 2 else 'b'}" for i in range(60)]
    dataset = await dataset_svc.create_dataset()
    version = await dataset_svc.upload(dataset.name, "\n".join(rows).encode(),
                                       options=vpb.IngestOptions(tokenizer_model="minilm"))
    tokens = version.quality_report.token_length
    assert version.quality_report.tokenizer_model
    assert tokens.rows_measured == 60 and tokens.min == 4 and tokens.max == 33  # [CLS] … end [SEP]
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await dataset_svc.upload(dataset.name, "\n".join(rows).encode(),
                                 options=vpb.IngestOptions(tokenizer_model="/etc"))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "options.tokenizer_model" in err.value.details()
