"""Streams: an HTTP body → a client-streaming RPC, a server stream → Server-Sent Events.

Uploads: the first message carries the path, query and (multipart) form fields; the
body's bytes follow in messages that set only the rule's body field, each at most
``chunk_size`` bytes. gRPC pulls the next message only when it can send it, so the
gateway holds about one chunk per upload whatever the file's size.

Watches: each message becomes an SSE event whose ``id`` is its ``sequence_number``;
``Last-Event-ID`` on reconnection becomes the request's ``after_sequence_number``.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from typing import Any

from google.protobuf.message import Message
from python_multipart import MultipartParser
from python_multipart.multipart import parse_options_header

from gateway.errors import GatewayError, Violation, error_body, status_of
from gateway.transcode import to_json

# The convention the Watch methods share (see e.g. WatchTuningJobRequest).
EVENT_ID_FIELD = "sequence_number"
RESUME_FIELD = "after_sequence_number"
MAX_FORM_FIELD_BYTES = 64 * 1024


def rechunk(data: bytearray, chunk_size: int, final: bool = False) -> list[bytes]:
    """Cut full chunks (and, when ``final``, the rest) off the front of ``data``."""
    out = []
    while len(data) >= chunk_size or (final and data):
        out.append(bytes(data[:chunk_size]))
        del data[:chunk_size]
    return out


async def raw_upload(first: Message, body: AsyncIterator[bytes], make_chunk: Callable[[bytes], Message],
                     chunk_size: int) -> AsyncIterator[Message]:
    """A raw body: the first message, then the bytes as they come, re-cut to ``chunk_size``."""
    yield first
    pending = bytearray()
    async for piece in body:
        pending += piece
        for chunk in rechunk(pending, chunk_size):
            yield make_chunk(chunk)
    for chunk in rechunk(pending, chunk_size, final=True):
        yield make_chunk(chunk)


async def _multipart_events(body: AsyncIterator[bytes], boundary: bytes) -> AsyncIterator[tuple[str, Any]]:
    """("part", headers) / ("data", bytes) / ("end", None) events of a multipart body, streamed."""
    events: list[tuple[str, Any]] = []
    headers: dict[str, bytes] = {}
    header = {"field": b"", "value": b""}

    def on_header_field(data: bytes, start: int, end: int) -> None:
        header["field"] += data[start:end]

    def on_header_value(data: bytes, start: int, end: int) -> None:
        header["value"] += data[start:end]

    def on_header_end() -> None:
        # Values stay bytes: browsers send UTF-8 names, which a str round trip through
        # the header parser's latin-1 would not survive.
        headers[header["field"].decode("latin-1").lower()] = header["value"]
        header["field"] = header["value"] = b""

    def on_headers_finished() -> None:
        events.append(("part", dict(headers)))
        headers.clear()

    def on_part_data(data: bytes, start: int, end: int) -> None:
        events.append(("data", bytes(data[start:end])))

    def on_part_end() -> None:
        events.append(("end", None))

    parser = MultipartParser(boundary, {
        "on_header_field": on_header_field, "on_header_value": on_header_value,
        "on_header_end": on_header_end, "on_headers_finished": on_headers_finished,
        "on_part_data": on_part_data, "on_part_end": on_part_end,
    })
    async for piece in body:
        try:
            parser.write(piece)
        except Exception as exc:  # noqa: BLE001 - python-multipart raises several kinds
            raise GatewayError.invalid(f"the multipart body is malformed: {exc}",
                                       [Violation("body", str(exc))]) from None
        for event in events:
            yield event
        events.clear()
    parser.finalize()
    for event in events:
        yield event


async def multipart_upload(content_type: str, body: AsyncIterator[bytes],
                           make_first: Callable[[list[tuple[str, str]]], Message],
                           make_chunk: Callable[[bytes], Message], chunk_size: int,
                           ) -> AsyncIterator[Message]:
    """A multipart/form-data body: form fields before the file part name request fields
    (as query parameters do); the first part with a file name (or named after the body
    field) is the file. Exactly one file part."""
    _, params = parse_options_header(content_type)
    boundary = params.get(b"boundary")
    if not boundary:
        raise GatewayError.invalid("multipart body without a boundary",
                                   [Violation("content-type", "missing boundary parameter")])
    fields: list[tuple[str, str]] = []
    current: tuple[str, bytearray] | None = None  # a form field being read
    in_file = done = False
    pending = bytearray()
    async for kind, value in _multipart_events(body, boundary):
        if kind == "part":
            _, disposition = parse_options_header(value.get("content-disposition", b""))
            name = disposition.get(b"name", b"").decode("utf-8", "replace")
            if b"filename" in disposition or name == "file":
                if done:
                    raise GatewayError.invalid("send one file per upload",
                                               [Violation(name or "file", "a second file part")])
                in_file = True
                yield make_first(fields)
            else:
                current = (name, bytearray())
        elif kind == "data":
            if in_file:
                pending += value
                for chunk in rechunk(pending, chunk_size):
                    yield make_chunk(chunk)
            elif current is not None:
                current[1].extend(value)
                if len(current[1]) > MAX_FORM_FIELD_BYTES:
                    raise GatewayError.invalid(f"form field '{current[0]}' is too long",
                                               [Violation(current[0], "at most 64 KiB")])
        elif kind == "end":
            if in_file:
                for chunk in rechunk(pending, chunk_size, final=True):
                    yield make_chunk(chunk)
                in_file, done = False, True
            elif current is not None:
                if not done:  # fields after the file cannot reach the first message
                    fields.append((current[0], current[1].decode("utf-8", "replace")))
                current = None
    if not done:
        raise GatewayError.invalid("the multipart body has no file part",
                                   [Violation("file", "add a part with a file name")])


def sse_event(message: Message) -> bytes:
    data = to_json(message)
    lines = []
    if EVENT_ID_FIELD in message.DESCRIPTOR.fields_by_name:
        lines.append(f"id: {getattr(message, EVENT_ID_FIELD)}")
    lines.append("data: " + json.dumps(data, separators=(",", ":")))
    return ("\n".join(lines) + "\n\n").encode()


def sse_error(exc: BaseException) -> bytes:
    body = json.dumps(error_body(status_of(exc)), separators=(",", ":"))
    return f"event: error\ndata: {body}\n\n".encode()


SSE_END = b"event: end\ndata: {}\n\n"


async def sse_stream(first: asyncio.Task | None, call, keepalive_seconds: float) -> AsyncIterator[bytes]:
    """SSE bytes for a server-streaming call: events, a comment every ``keepalive_seconds``
    of silence (proxies drop idle connections), ``event: end`` when the stream ends,
    ``event: error`` with the error body when it fails."""
    iterator = call.__aiter__()
    next_message = first or asyncio.ensure_future(iterator.__anext__())
    try:
        yield b"retry: 2000\n\n"
        while True:
            done, _ = await asyncio.wait({next_message}, timeout=keepalive_seconds)
            if not done:
                yield b": keepalive\n\n"
                continue
            try:
                message = next_message.result()
            except StopAsyncIteration:
                yield SSE_END
                return
            except Exception as exc:  # noqa: BLE001 - every failure reaches the client as an event
                yield sse_error(exc)
                return
            yield sse_event(message)
            next_message = asyncio.ensure_future(iterator.__anext__())
    finally:  # the client went away, or the stream ended
        call.cancel()
        if not next_message.done():
            next_message.cancel()
