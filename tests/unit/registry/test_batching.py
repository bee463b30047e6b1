"""Micro-batching and the LRU of loaded models, with a stand-in for the forward pass."""

import asyncio
from concurrent.futures import ThreadPoolExecutor

import pytest

from services.registry_svc.predictor import Batcher, ModelCache, Retired, Served

POOL = ThreadPoolExecutor(max_workers=1)


def _upper(key, texts):
    return [f"{key}:{t.upper()}" for t in texts]


async def test_concurrent_requests_share_forward_passes():
    batcher = Batcher(_upper, POOL, max_batch=8, wait_seconds=0.05)
    answers = await asyncio.gather(*(batcher.submit("k", [f"t{i}"]) for i in range(16)))
    assert [a[0] for a in answers] == [f"k:T{i}" for i in range(16)]
    assert batcher.batches == 2  # 16 inputs, batches of at most 8
    mixed = await asyncio.gather(batcher.submit("a", ["x"]), batcher.submit("b", ["y"]))
    assert mixed == [["a:X"], ["b:Y"]] and batcher.batches == 4  # different settings never share a pass
    await batcher.close()


async def test_errors_reach_every_caller_of_the_batch():
    def boom(key, texts):
        raise RuntimeError("out of memory")

    batcher = Batcher(boom, POOL, max_batch=8, wait_seconds=0.01)
    results = await asyncio.gather(batcher.submit("k", ["a"]), batcher.submit("k", ["b"]), return_exceptions=True)
    assert all(isinstance(r, RuntimeError) for r in results)
    await batcher.close()


async def test_least_recently_used_model_is_unloaded_and_queued_work_still_answers():
    cache = ModelCache(capacity=2)

    def load(name):
        async def run():
            return Served(name, None, Batcher(_upper, POOL, max_batch=4, wait_seconds=0.05))
        return run

    a = await cache.get("a", load("a"))
    await cache.get("b", load("b"))
    await cache.get("a", load("a"))  # a is now the most recent
    pending = asyncio.ensure_future(a.batcher.submit("k", ["late"]))
    await asyncio.sleep(0)
    b = (await asyncio.gather(cache.get("b", load("b"))))[0]
    await cache.get("c", load("c"))  # evicts a (least recently used), not b
    assert cache.keys() == ["b", "c"] and cache.loads == 3
    assert await pending == ["k:LATE"]  # queued before the unload: still answered
    with pytest.raises(Retired):
        await a.batcher.submit("k", ["after"])
    assert b.batcher.retired is False
    await cache.close()
