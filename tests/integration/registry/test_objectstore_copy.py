"""ObjectStore.copy (server-side CopyObject) and sha256 (streamed) against the S3 server."""

import hashlib
import os

import pytest

from services.common.errors import NotFound


async def test_copy_is_server_side_and_hash_is_streamed(object_store):
    data = os.urandom(3 * 1024 * 1024 + 17)
    await object_store.put_bytes("copy-test/source.bin", data)
    info = await object_store.copy("copy-test/source.bin", "copy-test/dest/copy.bin")
    assert info.size == len(data)
    assert await object_store.get_bytes("copy-test/dest/copy.bin") == data
    assert await object_store.sha256("copy-test/dest/copy.bin") == hashlib.sha256(data).hexdigest()
    # The copy is independent of its source.
    await object_store.delete("copy-test/source.bin")
    assert await object_store.exists("copy-test/dest/copy.bin")


async def test_copy_of_a_missing_object_is_not_found(object_store):
    with pytest.raises(NotFound):
        await object_store.copy("copy-test/missing.bin", "copy-test/never.bin")
    assert not await object_store.exists("copy-test/never.bin")
