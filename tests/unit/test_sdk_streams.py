"""Ending a server stream in the SDK works whatever a client interceptor returned."""

import asyncio

from mtw.client.transport import aend_stream, end_stream


class _Call:
    cancelled = False

    def cancel(self) -> bool:
        self.cancelled = True
        return True


def test_a_call_is_cancelled_and_a_generator_closed():
    call = _Call()
    end_stream(call)
    assert call.cancelled

    def messages():
        yield 1
        yield 2

    stream = messages()
    assert next(stream) == 1
    end_stream(stream)  # OpenTelemetry's client interceptor hands back a generator
    assert list(stream) == []


def test_async_generator_is_closed():
    async def messages():
        yield 1
        yield 2

    async def run() -> list[int]:
        stream = messages()
        assert await stream.__anext__() == 1
        await aend_stream(stream)
        return [m async for m in stream]

    assert asyncio.run(run()) == []
