"""Channels, the auth interceptor, retries and error conversion — sync and grpc.aio.

Every call made through :class:`SyncTransport` / :class:`AsyncTransport` carries
``authorization: Bearer <key>``, gets the client's default deadline, is retried with
exponential backoff on UNAVAILABLE when the caller marks it idempotent, and raises
:class:`mtw.errors.MtwApiError` instead of ``grpc.RpcError``.
"""

from __future__ import annotations

import asyncio
import collections
import time
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any, TypeVar

import grpc
import grpc.aio
from tenacity import (
    AsyncRetrying,
    Retrying,
    retry_if_exception_type,
    stop_after_attempt,
    wait_exponential_jitter,
)

from mtw import __version__
from mtw.client.config import ClientConfig
from mtw.errors import MtwError, Unavailable, from_rpc_error

T = TypeVar("T")

# Messages up to 4 MiB chunks plus headroom; previews of long rows can be large too.
_MAX_MESSAGE = 16 * 1024 * 1024
CHANNEL_OPTIONS = [
    ("grpc.max_send_message_length", _MAX_MESSAGE),
    ("grpc.max_receive_message_length", _MAX_MESSAGE),
    ("grpc.primary_user_agent", f"mtw-python/{__version__}"),
]

USE_DEFAULT = object()  # sentinel: "use the client's default timeout"


def end_stream(call: Any) -> None:
    """Stop reading a server stream: a call is cancelled; a plain generator (what a client
    interceptor such as OpenTelemetry's returns) is closed."""
    cancel = getattr(call, "cancel", None)
    if cancel is not None:
        cancel()
    elif hasattr(call, "close"):
        call.close()


async def aend_stream(call: Any) -> None:
    """The grpc.aio twin of :func:`end_stream`."""
    cancel = getattr(call, "cancel", None)
    if cancel is not None:
        cancel()
    elif hasattr(call, "aclose"):
        await call.aclose()


MAX_RECONNECTS = 10


def follow(open_stream: Callable[[int], Any], after: int, reconnect: bool = True) -> Iterator[Any]:
    """The events of a ``Watch…`` stream, ``open_stream(after_sequence_number)``: a stream
    that drops (UNAVAILABLE) is re-opened after the last event seen, so nothing is missed
    or repeated; any other error, or too many drops in a row, is raised."""
    last, failures = after, 0
    while True:
        call = open_stream(last)
        try:
            for event in call:
                failures = 0
                last = event.sequence_number
                yield event
            return
        except grpc.RpcError as e:
            if (error := _reconnectable(e, failures, reconnect)) is not None:
                raise error from None
            failures += 1
            time.sleep(_backoff(failures))
        finally:
            end_stream(call)


async def afollow(open_stream: Callable[[int], Any], after: int, reconnect: bool = True) -> AsyncIterator[Any]:
    """The grpc.aio twin of :func:`follow`."""
    last, failures = after, 0
    while True:
        call = open_stream(last)
        try:
            async for event in call:
                failures = 0
                last = event.sequence_number
                yield event
            return
        except grpc.RpcError as e:
            if (error := _reconnectable(e, failures, reconnect)) is not None:
                raise error from None
            failures += 1
            await asyncio.sleep(_backoff(failures))
        finally:
            await aend_stream(call)


def _reconnectable(e: grpc.RpcError, failures: int, reconnect: bool) -> MtwError | None:
    """None when a dropped stream should be re-opened, else the error to raise."""
    error: MtwError = from_rpc_error(e)
    if not reconnect or not isinstance(error, Unavailable) or failures >= MAX_RECONNECTS:
        return error
    return None


def _backoff(failures: int) -> float:
    return min(5.0, 0.2 * 2**failures)


class _CallDetails(
    collections.namedtuple(
        "_CallDetails",
        ("method", "timeout", "metadata", "credentials", "wait_for_ready", "compression"),
    ),
    grpc.ClientCallDetails,
):
    pass


def _with_auth(metadata: Any, api_key: str) -> list[tuple[str, str]]:
    items = [(k, v) for k, v in (metadata or ()) if k.lower() != "authorization"]
    items.append(("authorization", f"Bearer {api_key}"))
    return items


class AuthInterceptor(
    grpc.UnaryUnaryClientInterceptor,
    grpc.UnaryStreamClientInterceptor,
    grpc.StreamUnaryClientInterceptor,
    grpc.StreamStreamClientInterceptor,
):
    """Adds ``authorization: Bearer <key>`` to every call on a sync channel."""

    def __init__(self, api_key: str) -> None:
        self._api_key = api_key

    def _details(self, d: grpc.ClientCallDetails) -> grpc.ClientCallDetails:
        return _CallDetails(
            d.method,
            d.timeout,
            _with_auth(d.metadata, self._api_key),
            d.credentials,
            getattr(d, "wait_for_ready", None),
            getattr(d, "compression", None),
        )

    def intercept_unary_unary(self, continuation, client_call_details, request):
        return continuation(self._details(client_call_details), request)

    def intercept_unary_stream(self, continuation, client_call_details, request):
        return continuation(self._details(client_call_details), request)

    def intercept_stream_unary(self, continuation, client_call_details, request_iterator):
        return continuation(self._details(client_call_details), request_iterator)

    def intercept_stream_stream(self, continuation, client_call_details, request_iterator):
        return continuation(self._details(client_call_details), request_iterator)


class _AioAuthBase:
    def __init__(self, api_key: str) -> None:
        self._api_key = api_key

    def _details(self, d: grpc.aio.ClientCallDetails) -> grpc.aio.ClientCallDetails:
        return grpc.aio.ClientCallDetails(
            d.method,
            d.timeout,
            grpc.aio.Metadata(*_with_auth(d.metadata, self._api_key)),
            d.credentials,
            d.wait_for_ready,
        )


class AioAuthUnaryUnary(_AioAuthBase, grpc.aio.UnaryUnaryClientInterceptor):
    async def intercept_unary_unary(self, continuation, client_call_details, request):
        return await continuation(self._details(client_call_details), request)


class AioAuthUnaryStream(_AioAuthBase, grpc.aio.UnaryStreamClientInterceptor):
    async def intercept_unary_stream(self, continuation, client_call_details, request):
        return await continuation(self._details(client_call_details), request)


class AioAuthStreamUnary(_AioAuthBase, grpc.aio.StreamUnaryClientInterceptor):
    async def intercept_stream_unary(self, continuation, client_call_details, request_iterator):
        return await continuation(self._details(client_call_details), request_iterator)


class AioAuthStreamStream(_AioAuthBase, grpc.aio.StreamStreamClientInterceptor):
    async def intercept_stream_stream(self, continuation, client_call_details, request_iterator):
        return await continuation(self._details(client_call_details), request_iterator)


def aio_auth_interceptors(api_key: str) -> list[grpc.aio.ClientInterceptor]:
    return [
        AioAuthUnaryUnary(api_key),
        AioAuthUnaryStream(api_key),
        AioAuthStreamUnary(api_key),
        AioAuthStreamStream(api_key),
    ]


def _retry_kwargs(config: ClientConfig, idempotent: bool) -> dict[str, Any]:
    return {
        "retry": retry_if_exception_type(Unavailable),
        "stop": stop_after_attempt(1 + (config.retries if idempotent else 0)),
        "wait": wait_exponential_jitter(multiplier=config.backoff, max=10.0, jitter=config.backoff),
        "reraise": True,
    }


def _timeout(config: ClientConfig, timeout: Any) -> float | None:
    return config.timeout if timeout is USE_DEFAULT else timeout


class SyncTransport:
    """Lazily opened channels (one per service) and the call wrapper."""

    def __init__(
        self, config: ClientConfig, credentials: grpc.ChannelCredentials | None = None
    ) -> None:
        self.config = config
        self._credentials = credentials
        self._channels: dict[str, grpc.Channel] = {}
        self._stubs: dict[tuple[str, type], Any] = {}

    def stub(self, service: str, stub_cls: type[T]) -> T:
        key = (service, stub_cls)
        if key not in self._stubs:
            self._stubs[key] = stub_cls(self._channel(service))
        return self._stubs[key]

    def _channel(self, service: str) -> grpc.Channel:
        if service not in self._channels:
            target = self.config.endpoint_for(service)
            if self._credentials is None:
                raw = grpc.insecure_channel(target, options=CHANNEL_OPTIONS)
            else:
                raw = grpc.secure_channel(target, self._credentials, options=CHANNEL_OPTIONS)
            self._channels[service] = grpc.intercept_channel(
                raw, AuthInterceptor(self.config.api_key)
            )
        return self._channels[service]

    def call(
        self,
        method: Callable[..., T],
        request: Any,
        *,
        idempotent: bool,
        timeout: Any = USE_DEFAULT,
    ) -> T:
        """Invoke ``method(request)``; ``request`` may be a zero-argument factory for
        streaming requests (a fresh iterator per attempt)."""
        deadline = _timeout(self.config, timeout)
        for attempt in Retrying(**_retry_kwargs(self.config, idempotent)):
            with attempt:
                try:
                    req = request() if callable(request) else request
                    return method(req, timeout=deadline)
                except grpc.RpcError as e:
                    raise from_rpc_error(e) from None
        raise AssertionError("unreachable")  # pragma: no cover

    def close(self) -> None:
        for channel in self._channels.values():
            channel.close()
        self._channels.clear()
        self._stubs.clear()


class AsyncTransport:
    """The grpc.aio twin of :class:`SyncTransport`; create it inside a running loop."""

    def __init__(
        self, config: ClientConfig, credentials: grpc.ChannelCredentials | None = None
    ) -> None:
        self.config = config
        self._credentials = credentials
        self._channels: dict[str, grpc.aio.Channel] = {}
        self._stubs: dict[tuple[str, type], Any] = {}

    def stub(self, service: str, stub_cls: type[T]) -> T:
        key = (service, stub_cls)
        if key not in self._stubs:
            self._stubs[key] = stub_cls(self._channel(service))
        return self._stubs[key]

    def _channel(self, service: str) -> grpc.aio.Channel:
        if service not in self._channels:
            target = self.config.endpoint_for(service)
            interceptors = aio_auth_interceptors(self.config.api_key)
            if self._credentials is None:
                ch = grpc.aio.insecure_channel(
                    target, options=CHANNEL_OPTIONS, interceptors=interceptors
                )
            else:
                ch = grpc.aio.secure_channel(
                    target, self._credentials, options=CHANNEL_OPTIONS, interceptors=interceptors
                )
            self._channels[service] = ch
        return self._channels[service]

    async def call(
        self,
        method: Callable[..., Any],
        request: Any,
        *,
        idempotent: bool,
        timeout: Any = USE_DEFAULT,
    ) -> Any:
        deadline = _timeout(self.config, timeout)
        async for attempt in AsyncRetrying(**_retry_kwargs(self.config, idempotent)):
            with attempt:
                try:
                    req = request() if callable(request) else request
                    return await method(req, timeout=deadline)
                except grpc.RpcError as e:
                    raise from_rpc_error(e) from None
        raise AssertionError("unreachable")  # pragma: no cover

    async def close(self) -> None:
        for channel in self._channels.values():
            await channel.close()
        self._channels.clear()
        self._stubs.clear()
