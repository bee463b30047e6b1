"""services.common.objectstore against a real S3 protocol server (moto)."""

import asyncio
import hashlib
import os
from datetime import timedelta

import pytest
import urllib3

from services.common.errors import InvalidArgument, NotFound
from services.common.objectstore import MiB, ObjectStore


async def _chunks(total_mib: int, fail_after: int | None = None, hasher=None, delay: float = 0):
    for i in range(total_mib):
        if fail_after is not None and i == fail_after:
            raise RuntimeError("client went away")
        chunk = os.urandom(MiB)
        if hasher:
            hasher.update(chunk)
        if delay:
            await asyncio.sleep(delay)
        yield chunk


async def test_put_stream_round_trip_40mb(object_store: ObjectStore):
    sent = hashlib.sha256()
    n = await object_store.put_stream("big/obj.bin", _chunks(40, hasher=sent), part_size=8 * MiB)
    assert n == 40 * MiB
    assert (await object_store.stat("big/obj.bin")).size == 40 * MiB
    got = hashlib.sha256()
    async for chunk in object_store.iter_object("big/obj.bin"):
        assert len(chunk) <= MiB
        got.update(chunk)
    assert got.hexdigest() == sent.hexdigest()
    assert await object_store.pending_uploads("big/") == []

    # The sync reader, as thread code uses it.
    def read_in_thread() -> str:
        h = hashlib.sha256()
        with object_store.open_stream("big/obj.bin") as f:
            while block := f.read(3 * MiB):
                h.update(block)
        return h.hexdigest()

    assert await asyncio.to_thread(read_in_thread) == sent.hexdigest()
    async with object_store.open_stream("big/obj.bin") as f:
        assert len(await asyncio.to_thread(f.read, 10)) == 10


async def test_put_stream_chunks_that_straddle_parts(object_store: ObjectStore):
    # Chunks smaller and larger than a part, none dividing it: parts are cut inside chunks.
    sizes = [300_000, 7 * MiB + 3, 1, 2 * MiB + 17, 123_457, 6 * MiB]
    data = os.urandom(sum(sizes))

    async def chunks():
        offset = 0
        for size in sizes:
            yield data[offset:offset + size]
            offset += size

    assert await object_store.put_stream("odd/obj.bin", chunks(), part_size=5 * MiB) == len(data)
    got = b"".join([chunk async for chunk in object_store.iter_object("odd/obj.bin")])
    assert hashlib.sha256(got).digest() == hashlib.sha256(data).digest()


@pytest.mark.parametrize("declared", [12 * MiB - 1, 12 * MiB + 1], ids=["longer", "shorter"])
async def test_put_stream_of_another_length_than_declared_leaves_nothing(object_store: ObjectStore, declared):
    with pytest.raises(ValueError, match=f"{declared} bytes declared"):
        await object_store.put_stream("mislength/obj.bin", _chunks(12), part_size=5 * MiB, length=declared)
    with pytest.raises(NotFound):
        await object_store.stat("mislength/obj.bin")
    assert await object_store.pending_uploads("mislength/") == []


async def test_small_stream_single_part(object_store: ObjectStore):
    async def few():
        yield b"hello "
        yield b""
        yield b"world"

    assert await object_store.put_stream("small/hello.txt", few(), content_type="text/plain") == 11
    assert await object_store.get_bytes("small/hello.txt") == b"hello world"
    assert (await object_store.stat("small/hello.txt")).content_type == "text/plain"


async def test_put_stream_error_midway_leaves_nothing(object_store: ObjectStore):
    # Fails after 3 parts of 5 MiB were uploaded: a multipart upload exists and must be aborted.
    with pytest.raises(RuntimeError, match="client went away"):
        await object_store.put_stream(
            "failed/obj.bin", _chunks(40, fail_after=17), part_size=5 * MiB
        )
    assert not await object_store.exists("failed/obj.bin")
    assert await object_store.list("failed/") == []
    assert await object_store.pending_uploads("failed/") == []


async def test_put_stream_cancelled_leaves_nothing(object_store: ObjectStore):
    task = asyncio.create_task(
        object_store.put_stream("cancelled/obj.bin", _chunks(100, delay=0.01), part_size=5 * MiB)
    )
    while not await object_store.pending_uploads("cancelled/"):
        await asyncio.sleep(0.05)  # wait until a multipart upload really exists
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await object_store.list("cancelled/") == []
    assert await object_store.pending_uploads("cancelled/") == []


async def test_misc_operations(object_store: ObjectStore, tmp_path):
    with pytest.raises(NotFound) as err:
        await object_store.stat("missing/key")
    assert err.value.reason == "OBJECT_NOT_FOUND"
    with pytest.raises(NotFound):
        await object_store.get_bytes("missing/key")
    assert not await object_store.exists("missing/key")

    for i in range(5):
        await object_store.put_bytes(f"pfx/a/{i}.txt", b"x" * i)
    path = tmp_path / "f.bin"
    path.write_bytes(b"file-bytes")
    assert await object_store.put_file("pfx/b/f.bin", path) == 10
    listed = await object_store.list("pfx/")
    assert sorted(o.key for o in listed) == [f"pfx/a/{i}.txt" for i in range(5)] + ["pfx/b/f.bin"]
    assert {o.key: o.size for o in listed}["pfx/a/3.txt"] == 3

    assert object_store.uri("pfx/b/f.bin") == f"s3://{object_store.bucket}/pfx/b/f.bin"
    assert object_store.parse_uri(object_store.uri("pfx/b/f.bin")) == "pfx/b/f.bin"
    with pytest.raises(InvalidArgument):
        object_store.parse_uri("s3://other-bucket/pfx/b/f.bin")

    url = await object_store.presigned_get_url("pfx/b/f.bin", expires=timedelta(minutes=5))
    resp = await asyncio.to_thread(urllib3.request, "GET", url)
    assert resp.status == 200 and resp.data == b"file-bytes"
    put_url = await object_store.presigned_put_url("pfx/c/up.txt")
    resp = await asyncio.to_thread(
        urllib3.request, "PUT", put_url, body=b"via-url", headers={"Content-Type": "text/plain"}
    )
    assert resp.status == 200
    assert await object_store.get_bytes("pfx/c/up.txt") == b"via-url"

    assert await object_store.delete_prefix("pfx/a/") == 5
    await object_store.delete("pfx/b/f.bin")
    await object_store.delete("pfx/b/f.bin")  # idempotent
    assert [o.key for o in await object_store.list("pfx/")] == ["pfx/c/up.txt"]
    with pytest.raises(InvalidArgument):
        await object_store.delete_prefix("")


async def test_from_settings_and_scheme(service_settings):
    settings = service_settings()
    store = ObjectStore.from_settings(settings)
    assert store.bucket == settings.s3_bucket and await store.ping()
    store2 = ObjectStore("http://" + settings.s3_endpoint, "a", "b", "x")
    assert store2.endpoint == settings.s3_endpoint and store2.secure is False
    store.close()
    store2.close()
