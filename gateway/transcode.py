"""HTTP request parts ↔ protobuf messages, after the ``google.api.http`` rules.

Path variables and query parameters name request fields by path (``dataset.name``,
``page_size``; the JSON names ``pageSize`` work too); the body fills the field the rule
names, or the whole request for ``*``. Responses are proto3 JSON with the proto field
names (``next_page_token``), every field printed, int64 as strings.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from google.protobuf import descriptor as _descriptor
from google.protobuf import json_format
from google.protobuf.message import Message

from gateway.errors import GatewayError, Violation

FD = _descriptor.FieldDescriptor
_INTS = {FD.TYPE_INT32, FD.TYPE_INT64, FD.TYPE_UINT32, FD.TYPE_UINT64, FD.TYPE_SINT32,
         FD.TYPE_SINT64, FD.TYPE_FIXED32, FD.TYPE_FIXED64, FD.TYPE_SFIXED32, FD.TYPE_SFIXED64}
_FLOATS = {FD.TYPE_FLOAT, FD.TYPE_DOUBLE}


def to_json(message: Message) -> dict[str, Any]:
    """The response style, in one place."""
    return json_format.MessageToDict(
        message, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
    )


def _field(descriptor: _descriptor.Descriptor, name: str) -> FD | None:
    return descriptor.fields_by_name.get(name) or next(
        (f for f in descriptor.fields if f.json_name == name), None
    )


def resolve_path(descriptor: _descriptor.Descriptor, path: str) -> list[FD]:
    """The fields along ``a.b.c``; GatewayError naming the parameter when one is unknown."""
    fields = []
    for part in path.split("."):
        f = _field(descriptor, part) if descriptor is not None else None
        if f is None:
            raise GatewayError.invalid(
                f"unknown parameter '{path}'", [Violation(path, "no such field in the request")]
            )
        fields.append(f)
        descriptor = f.message_type
    return fields


def _scalar(f: FD, raw: str, name: str) -> Any:
    """A query/path string as the JSON value ParseDict expects for this field."""
    try:
        if f.type in _INTS:
            return int(raw)
        if f.type in _FLOATS:
            return float(raw)
    except ValueError:
        raise GatewayError.invalid(
            f"parameter '{name}' must be a number", [Violation(name, f"'{raw}' is not a number")]
        ) from None
    if f.type == FD.TYPE_BOOL:
        if raw.lower() in ("true", "1", ""):
            return True
        if raw.lower() in ("false", "0"):
            return False
        raise GatewayError.invalid(
            f"parameter '{name}' must be true or false", [Violation(name, f"'{raw}' is not a boolean")]
        )
    return raw  # strings, bytes (base64), enums by name, well-known types' JSON strings


def _is_map(f: FD) -> bool:
    return f.message_type is not None and f.message_type.GetOptions().map_entry


def fields_to_dict(descriptor: _descriptor.Descriptor, values: Iterable[tuple[str, str]]) -> dict:
    """(field path, string) pairs → a nested JSON dict for ``json_format.ParseDict``.

    A repeated field collects every value given for it (``?ids=a&ids=b``).
    """
    out: dict[str, Any] = {}
    for path, raw in values:
        fields = resolve_path(descriptor, path)
        leaf = fields[-1]
        node = out
        for f in fields[:-1]:
            if f.is_repeated:
                raise GatewayError.invalid(
                    f"parameter '{path}' goes through a repeated field",
                    [Violation(path, "only singular messages can be addressed by path")])
            node = node.setdefault(f.name, {})
        if _is_map(leaf) or (
            leaf.message_type is not None and leaf.message_type.full_name.startswith("mtw.")
        ):
            raise GatewayError.invalid(
                f"parameter '{path}' is a message; name one of its fields",
                [Violation(path, "set its fields one by one, e.g. 'a.b=value'")])
        value = _scalar(leaf, raw, path)
        if leaf.is_repeated:
            node.setdefault(leaf.name, []).append(value)
        else:
            node[leaf.name] = value
    return out


def merge_dict(target: dict, extra: dict) -> dict:
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(target.get(key), dict):
            merge_dict(target[key], value)
        else:
            target[key] = value
    return target


def parse_into(message: Message, data: Any, where: str = "body") -> Message:
    """``json_format.ParseDict`` with a 400 (naming the problem) instead of a ParseError."""
    if not isinstance(data, dict):
        raise GatewayError.invalid(
            f"the {where} must be a JSON object", [Violation(where, "expected a JSON object")])
    try:
        json_format.ParseDict(data, message, ignore_unknown_fields=False)
    except json_format.ParseError as exc:
        raise GatewayError.invalid(f"the {where} does not fit {message.DESCRIPTOR.name}: {exc}",
                                   [Violation(where, str(exc))]) from None
    return message


def body_field_names(route_body: str, descriptor: _descriptor.Descriptor) -> set[str]:
    """Top-level request fields the body fills (so they are not taken from the query)."""
    if route_body == "*":
        return {f.name for f in descriptor.fields}
    return {route_body} if route_body else set()


def build_request(route, path_values: dict[str, str], query: Iterable[tuple[str, str]],
                  body: Any | None) -> Message:
    """The request message of ``route`` from path values, query pairs and a parsed JSON body."""
    descriptor = route.request_class.DESCRIPTOR
    data: dict[str, Any] = {}
    if route.body == "*":
        if body is not None:
            if not isinstance(body, dict):
                parse_into(route.request_class(), body)  # raises the 400
            data = dict(body)
    elif route.body and body is not None:
        data[route.body] = body
    taken = body_field_names(route.body, descriptor)
    query_pairs = []
    for name, value in query:
        top = resolve_path(descriptor, name)[0].name
        if top in taken:
            raise GatewayError.invalid(
                f"parameter '{name}' belongs in the request body",
                [Violation(name, "this field is read from the body for this method")])
        query_pairs.append((name, value))
    merge_dict(data, fields_to_dict(descriptor, query_pairs))
    # Path values win over anything in the body for the same field.
    merge_dict(data, fields_to_dict(descriptor, path_values.items()))
    return parse_into(route.request_class(), data)
