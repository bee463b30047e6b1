"""REST request → gRPC call → HTTP response, for whichever route matches."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping

import grpc
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse

from gateway.auth import call_metadata
from gateway.errors import GatewayError, error_body, http_status, status_of
from gateway.rules import Route, RouteTable
from gateway.settings import GatewaySettings
from gateway.streaming import RESUME_FIELD, multipart_upload, raw_upload, sse_stream
from gateway.transcode import build_request, fields_to_dict, merge_dict, parse_into, to_json

# How long a watch may take to produce its first event before the SSE response starts
# anyway (errors known by then — bad key, unknown job — still get their HTTP status).
FIRST_EVENT_WAIT_SECONDS = 1.0


def error_response(exc: BaseException) -> JSONResponse:
    status = status_of(exc)
    return JSONResponse(error_body(status), status_code=http_status(status))


class Proxy:
    """Owns one channel per service and turns requests into calls."""

    def __init__(self, settings: GatewaySettings, routes: RouteTable,
                 endpoints: Mapping[str, str]) -> None:
        self.settings = settings
        self.routes = routes
        self.endpoints = dict(endpoints)
        self._channels: dict[str, grpc.aio.Channel] = {}

    def channel(self, route: Route) -> grpc.aio.Channel:
        endpoint = self.endpoints.get(route.package)
        if not endpoint:
            raise GatewayError.unavailable(f"the {route.package} service is not configured "
                                           f"(set MTW_{route.package.upper()}_ENDPOINT)")
        channel = self._channels.get(endpoint)
        if channel is None:  # created in the serving loop, after the gRPC instrumentation
            channel = grpc.aio.insecure_channel(endpoint, options=[
                ("grpc.max_receive_message_length", self.settings.max_response_bytes)])
            self._channels[endpoint] = channel
        return channel

    async def close(self) -> None:
        for channel in self._channels.values():
            await channel.close()
        self._channels.clear()

    async def handle(self, request: Request) -> Response:
        try:
            found = self.routes.find(request.method, request.url.path)
            if found is None:
                raise GatewayError.not_found(
                    f"no API method answers {request.method} {request.url.path}")
            route, path_values = found
            metadata = call_metadata(request)
            if route.client_streaming:
                return await self._client_stream(route, path_values, request, metadata)
            request_message = build_request(route, path_values, request.query_params.multi_items(),
                                            await _json_body(request, route))
            if route.server_streaming:
                return await self._server_stream(route, request_message, request, metadata)
            return JSONResponse(to_json(await self._unary(route, request_message, metadata)))
        except (GatewayError, grpc.aio.AioRpcError) as exc:
            return error_response(exc)

    async def call(self, http_method: str, path: str, query: list[tuple[str, str]], key: str):
        """A unary call by REST path with ``key`` (the gateway's own needs, e.g. checking a
        key at sign-in): the response message, or the error as a value."""
        try:
            found = self.routes.find(http_method, path)
            if found is None:
                raise GatewayError.not_found(f"no API method answers {http_method} {path}")
            route, path_values = found
            message = build_request(route, path_values, query, None)
            return await self._unary(route, message, (("authorization", f"Bearer {key}"),))
        except (GatewayError, grpc.aio.AioRpcError) as exc:
            return exc

    async def _unary(self, route: Route, message, metadata):
        method = self.channel(route).unary_unary(
            route.grpc_path, request_serializer=route.request_class.SerializeToString,
            response_deserializer=route.response_class.FromString)
        return await method(message, metadata=metadata, timeout=self.settings.rpc_timeout_seconds)

    async def _client_stream(self, route: Route, path_values, request: Request, metadata) -> Response:
        descriptor = route.request_class.DESCRIPTOR
        body_field = descriptor.fields_by_name.get(route.body)
        if body_field is None or body_field.type != body_field.TYPE_BYTES:
            raise GatewayError(grpc.StatusCode.UNIMPLEMENTED,
                               f"{route.operation_id} streams messages the gateway cannot build",
                               "STREAM_NOT_SUPPORTED")
        query = list(request.query_params.multi_items())

        def make_first(form_fields):
            data = fields_to_dict(descriptor, query + list(form_fields))
            merge_dict(data, fields_to_dict(descriptor, path_values.items()))
            return parse_into(route.request_class(), data)

        def make_chunk(chunk: bytes):
            return route.request_class(**{route.body: chunk})

        content_type = request.headers.get("content-type", "")
        size = self.settings.upload_chunk_bytes
        if content_type.startswith("multipart/form-data"):
            messages = multipart_upload(content_type, request.stream(), make_first, make_chunk, size)
        else:
            messages = raw_upload(make_first(()), request.stream(), make_chunk, size)
        # The first message is built before the call so its errors are the caller's 400.
        messages = await _prime(messages)
        method = self.channel(route).stream_unary(
            route.grpc_path, request_serializer=route.request_class.SerializeToString,
            response_deserializer=route.response_class.FromString)
        failure: list[BaseException] = []
        try:
            response = await method(_recording(messages, failure), metadata=metadata)
        except asyncio.CancelledError:
            # gRPC cancels the call when reading the body fails: report why.
            if failure and isinstance(failure[0], Exception):
                raise GatewayError.invalid(f"the upload body could not be read: {failure[0]}") \
                    if not isinstance(failure[0], GatewayError) else failure[0] from None
            raise
        return JSONResponse(to_json(response))

    async def _server_stream(self, route: Route, message, request: Request, metadata) -> Response:
        last_id = request.headers.get("last-event-id", "").strip()
        if last_id and RESUME_FIELD in message.DESCRIPTOR.fields_by_name:
            try:
                setattr(message, RESUME_FIELD, int(last_id))
            except ValueError:
                raise GatewayError.invalid("Last-Event-ID must be an event's sequence number") from None
        method = self.channel(route).unary_stream(
            route.grpc_path, request_serializer=route.request_class.SerializeToString,
            response_deserializer=route.response_class.FromString)
        call = method(message, metadata=metadata)
        first = asyncio.ensure_future(call.__aiter__().__anext__())
        done, _ = await asyncio.wait({first}, timeout=FIRST_EVENT_WAIT_SECONDS)
        if done and first.exception() is not None and not isinstance(first.exception(), StopAsyncIteration):
            raise first.exception()
        return StreamingResponse(
            sse_stream(first, call, self.settings.sse_keepalive_seconds),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


async def _json_body(request: Request, route: Route):
    if not route.body:
        return None
    raw = await request.body()
    if not raw.strip():
        return None
    try:
        return json.loads(raw)
    except ValueError as exc:
        raise GatewayError.invalid(f"the body is not valid JSON: {exc}") from None


async def _prime(messages):
    """Pull the first message now (raising its errors here), then hand back the stream."""
    iterator = messages.__aiter__()
    first = await iterator.__anext__()

    async def again():
        yield first
        async for message in iterator:
            yield message

    return again()


async def _recording(messages, failure: list[BaseException]):
    """Pass messages on; a failure while reading the body is kept for the caller."""
    try:
        async for message in messages:
            yield message
    except BaseException as exc:
        failure.append(exc)
        raise
