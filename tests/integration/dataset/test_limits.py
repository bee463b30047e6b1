"""Guardrails: size limit, storage quota, cancelled uploads and unsafe names leave nothing."""

from __future__ import annotations

import asyncio
import hashlib

import grpc
import pytest

from mtw.dataset.v1 import dataset_service_pb2 as pb
from mtw.dataset.v1 import dataset_version_pb2 as vpb

from .conftest import MAX_UPLOAD, QUOTA


def _csv(size: int) -> bytes:
    line = b"some words in a row to make the file larger than it needs to be,%s\n"
    rows = [b"text,label\n"]
    total = len(rows[0])
    i = 0
    while total < size:
        row = line % (b"a" if i % 2 else b"b")
        rows.append(row.replace(b"some", b"row%d" % i))
        total += len(rows[-1])
        i += 1
    return b"".join(rows)


async def _nothing_stored(dataset_svc, dataset_name: str, versions_before: int) -> None:
    dataset_id = dataset_name.rsplit("/", 1)[-1]
    assert await dataset_svc.stored_keys(f"datasets/projects/alpha/datasets/{dataset_id}/") == []
    assert await dataset_svc.version_rows() == versions_before
    pending = await dataset_svc.running.pool.fetchval(
        "SELECT count(*) FROM dataset.unreferenced_prefixes WHERE object_prefix LIKE $1", f"%/{dataset_id}/%"
    )
    assert pending == 0
    uploads = await asyncio.to_thread(
        lambda: list(dataset_svc.running.objects.client._list_multipart_uploads(
            dataset_svc.running.objects.bucket).uploads)
    )
    assert [u for u in uploads if dataset_id in u.object_name] == []


async def test_oversize_upload_is_refused_and_leaves_nothing(dataset_svc):
    dataset = await dataset_svc.create_dataset()
    before = await dataset_svc.version_rows()
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await dataset_svc.upload(dataset.name, _csv(MAX_UPLOAD + 2**20), chunk_size=2**20)
    assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "maximum" in err.value.details()
    await _nothing_stored(dataset_svc, dataset.name, before)


async def test_declared_size_over_limit_is_refused_before_any_byte(dataset_svc):
    dataset = await dataset_svc.create_dataset()
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await dataset_svc.upload(dataset.name, b"text\nhi\n", declared_size=MAX_UPLOAD + 1)
    assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED


async def test_an_upload_of_its_declared_size_is_stored_whole(dataset_svc):
    dataset = await dataset_svc.create_dataset()
    data = _csv(12 * 2**20)  # three parts of the raw copy
    version = await dataset_svc.upload(dataset.name, data, chunk_size=700_000, declared_size=len(data))
    assert version.size_bytes == len(data)
    assert version.sha256 == hashlib.sha256(data).hexdigest()
    raw_key = version.raw_uri.split("/", 3)[3]
    assert (await dataset_svc.running.objects.stat(raw_key)).size == len(data)


@pytest.mark.parametrize("difference", [-1, 1, -3 * 2**20], ids=["one-byte-more", "one-byte-less", "a-part-more"])
async def test_an_upload_that_does_not_send_its_declared_size_is_refused(dataset_svc, difference):
    dataset = await dataset_svc.create_dataset()
    before = await dataset_svc.version_rows()
    data = _csv(12 * 2**20)
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await dataset_svc.upload(dataset.name, data, chunk_size=2**20, declared_size=len(data) + difference)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "header.size_bytes" in err.value.details()
    assert f"declares {len(data) + difference:,} bytes" in err.value.details()
    await _nothing_stored(dataset_svc, dataset.name, before)


async def test_storage_quota(dataset_svc):
    dataset = await dataset_svc.create_dataset("beta")
    data = _csv(MAX_UPLOAD // 2)
    stored = 0
    with pytest.raises(grpc.aio.AioRpcError) as err:
        while stored < 2 * QUOTA:  # bounded: the quota must bite long before this
            version = await dataset_svc.upload(dataset.name, data, project="beta", chunk_size=2**20)
            stored += version.size_bytes
    assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "quota" in err.value.details()
    assert stored <= QUOTA


async def test_cancelled_upload_leaves_nothing(dataset_svc):
    dataset = await dataset_svc.create_dataset()
    before = await dataset_svc.version_rows()
    sent = asyncio.Event()

    async def messages():
        yield pb.UploadDatasetVersionRequest(
            header=pb.UploadHeader(parent=dataset.name, options=vpb.IngestOptions(file_name="big.csv"))
        )
        yield pb.UploadDatasetVersionRequest(chunk=_csv(3 * 2**20))
        sent.set()
        await asyncio.sleep(30)  # the client walks away mid-upload

    call = dataset_svc.stub.UploadDatasetVersion(messages(), metadata=dataset_svc.auth())
    await sent.wait()
    await asyncio.sleep(0.5)
    call.cancel()
    with pytest.raises(asyncio.CancelledError):
        await call
    for _ in range(50):  # the server cleans up after the cancellation asynchronously
        await asyncio.sleep(0.1)
        try:
            await _nothing_stored(dataset_svc, dataset.name, before)
            break
        except AssertionError:
            pass
    await _nothing_stored(dataset_svc, dataset.name, before)


@pytest.mark.parametrize("file_name", ["../../etc/passwd", "a/b.csv", "..", "x\\y.csv", "bad\x00.csv"])
async def test_file_names_cannot_leave_the_prefix(dataset_svc, file_name):
    dataset = await dataset_svc.create_dataset()
    before = await dataset_svc.version_rows()
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await dataset_svc.upload(dataset.name, b"text\nhello\n", options=vpb.IngestOptions(file_name=file_name))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "file_name" in err.value.details()
    await _nothing_stored(dataset_svc, dataset.name, before)
    assert [k for k in await dataset_svc.stored_keys("") if "passwd" in k] == []
