"""The OpenAPI 3.1 document, generated from the same annotations the routes come from.

Resource-name variables are spread into one path parameter per collection
(``{name=projects/*/datasets/*}`` → ``/v1/projects/{project}/datasets/{dataset}``), so
the documented URL is exactly the one the router matches. Each operation also says
which RPC it calls and how its request is spread over path, query and body
(``x-grpc-method``, ``x-http-template``, ``x-body-field``): the dashboard calls the
API by RPC name through them.
"""

from __future__ import annotations

from typing import Any

from google.api import field_behavior_pb2
from google.protobuf import descriptor as _descriptor

from gateway.rules import Route, RouteTable, Template, Variable
from gateway.transcode import body_field_names

FD = _descriptor.FieldDescriptor
_INT32 = {FD.TYPE_INT32, FD.TYPE_UINT32, FD.TYPE_SINT32, FD.TYPE_FIXED32, FD.TYPE_SFIXED32}
_INT64 = {FD.TYPE_INT64, FD.TYPE_UINT64, FD.TYPE_SINT64, FD.TYPE_FIXED64, FD.TYPE_SFIXED64}
_WELL_KNOWN: dict[str, dict[str, Any]] = {
    "google.protobuf.Timestamp": {"type": "string", "format": "date-time"},
    "google.protobuf.Duration": {"type": "string", "pattern": r"^-?\d+(\.\d+)?s$",
                                 "examples": ["3.5s"]},
    "google.protobuf.FieldMask": {"type": "string", "description": "Comma-separated field paths."},
    "google.protobuf.Struct": {"type": "object", "additionalProperties": True},
    "google.protobuf.Value": {},
    "google.protobuf.ListValue": {"type": "array", "items": {}},
    "google.protobuf.Empty": {"type": "object"},
    "google.protobuf.Any": {"type": "object", "properties": {"@type": {"type": "string"}},
                            "additionalProperties": True},
    "google.protobuf.StringValue": {"type": ["string", "null"]},
    "google.protobuf.BoolValue": {"type": ["boolean", "null"]},
    "google.protobuf.Int32Value": {"type": ["integer", "null"]},
    "google.protobuf.Int64Value": {"type": ["string", "null"], "format": "int64"},
    "google.protobuf.FloatValue": {"type": ["number", "null"]},
    "google.protobuf.DoubleValue": {"type": ["number", "null"]},
}
ERROR_SCHEMA = {
    "type": "object",
    "properties": {"error": {"type": "object", "properties": {
        "code": {"type": "integer", "description": "HTTP status"},
        "status": {"type": "string", "description": "gRPC status name"},
        "message": {"type": "string"},
        "details": {"type": "array", "items": _WELL_KNOWN["google.protobuf.Any"],
                    "description": "google.rpc details: BadRequest (field_violations), ErrorInfo"},
    }}},
}


def _singular(collection: str) -> str:
    return collection[:-1] if collection.endswith("s") else collection + "_id"


def openapi_path(template: Template) -> tuple[str, list[tuple[str, str]]]:
    """(OpenAPI path, [(parameter, field path)])."""
    segments, params = [], []
    for part in template.parts:
        if isinstance(part, Variable):
            pattern = part.pattern.split("/")
            for i, seg in enumerate(pattern):
                if seg in ("*", "**"):
                    base = pattern[i - 1] if i else part.field_path.replace(".", "_")
                    param = _singular(base) if i else base
                    segments.append("{" + param + "}")
                    params.append((param, part.field_path))
                else:
                    segments.append(seg)
        else:
            segments.append(part)
    path = "/" + "/".join(segments) + (":" + template.verb if template.verb else "")
    return path, params


class SchemaBuilder:
    def __init__(self) -> None:
        self.schemas: dict[str, Any] = {}

    def ref(self, message: _descriptor.Descriptor) -> dict[str, Any]:
        if message.full_name in _WELL_KNOWN:
            return dict(_WELL_KNOWN[message.full_name])
        if message.full_name not in self.schemas:
            self.schemas[message.full_name] = {}  # placeholder: recursion stops here
            self.schemas[message.full_name] = self._message(message)
        return {"$ref": f"#/components/schemas/{message.full_name}"}

    def _message(self, message: _descriptor.Descriptor) -> dict[str, Any]:
        properties = {f.name: self.field(f) for f in message.fields}
        required = [f.name for f in message.fields if _behaviour(f, field_behavior_pb2.REQUIRED)]
        schema: dict[str, Any] = {"type": "object", "properties": properties,
                                  "additionalProperties": False}
        if required:
            schema["description"] = "Required: " + ", ".join(required)
        return schema

    def field(self, f: FD) -> dict[str, Any]:
        if f.message_type is not None and f.message_type.GetOptions().map_entry:
            value = f.message_type.fields_by_name["value"]
            return {"type": "object", "additionalProperties": self.scalar(value)}
        item = self.scalar(f)
        schema = {"type": "array", "items": item} if f.is_repeated else item
        if _behaviour(f, field_behavior_pb2.OUTPUT_ONLY):
            schema = {**schema, "readOnly": True} if "$ref" not in schema else {
                "allOf": [schema], "readOnly": True}
        return schema

    def scalar(self, f: FD) -> dict[str, Any]:
        if f.message_type is not None:
            return self.ref(f.message_type)
        if f.enum_type is not None:
            return {"type": "string", "enum": [v.name for v in f.enum_type.values]}
        if f.type in _INT32:
            return {"type": "integer", "format": "int32"}
        if f.type in _INT64:
            return {"type": "string", "format": "int64", "pattern": r"^-?\d+$"}
        if f.type in (FD.TYPE_FLOAT, FD.TYPE_DOUBLE):
            return {"type": "number"}
        if f.type == FD.TYPE_BOOL:
            return {"type": "boolean"}
        if f.type == FD.TYPE_BYTES:
            return {"type": "string", "format": "byte"}
        return {"type": "string"}


def _behaviour(f: FD, behaviour: int) -> bool:
    return behaviour in f.GetOptions().Extensions[field_behavior_pb2.field_behavior]


def _query_parameters(route: Route, builder: SchemaBuilder, path_fields: set[str]) -> list[dict]:
    """Top-level scalar (and well-known) request fields not bound to path or body."""
    descriptor = route.request_class.DESCRIPTOR
    taken = body_field_names(route.body, descriptor) | {p.split(".")[0] for p in path_fields}
    params = []
    for f in descriptor.fields:
        if f.name in taken or (f.message_type is not None
                               and f.message_type.full_name.startswith("mtw.")):
            continue
        if f.message_type is not None and f.message_type.GetOptions().map_entry:
            continue
        params.append({"name": f.name, "in": "query", "required": False,
                       "schema": builder.field(f), "style": "form", "explode": True})
    return params


def _description(method: _descriptor.MethodDescriptor) -> str:
    return f"Calls `{method.containing_service.full_name}/{method.name}`."


def build_spec(routes: RouteTable, title: str = "MTW API", version: str = "v1") -> dict[str, Any]:
    builder = SchemaBuilder()
    paths: dict[str, dict[str, Any]] = {}
    for route in sorted(routes.routes, key=lambda r: (r.template.text, r.http_method)):
        path, params = openapi_path(route.template)
        path_fields = {field for _, field in params}
        operation: dict[str, Any] = {
            "operationId": route.operation_id,
            "tags": [route.method.containing_service.name],
            "summary": route.method.name,
            "description": _description(route.method),
            "x-grpc-method": route.grpc_path,
            "x-http-template": route.template.text,
            "x-body-field": route.body,
            "parameters": [
                {"name": name, "in": "path", "required": True,
                 "schema": {"type": "string", "pattern": r"^[^/:]+$"},
                 "description": f"Part of `{field}`."}
                for name, field in params
            ] + _query_parameters(route, builder, path_fields),
            "responses": {"default": {"description": "An error",
                                      "content": {"application/json": {"schema": ERROR_SCHEMA}}}},
        }
        request_descriptor = route.request_class.DESCRIPTOR
        if route.client_streaming:
            operation["requestBody"] = {"required": True, "content": {
                "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
                "multipart/form-data": {"schema": {"type": "object", "properties": {
                    "file": {"type": "string", "format": "binary"}}, "required": ["file"]}},
            }, "description": f"The bytes of `{route.body}`, streamed; query parameters and "
                              "form fields before the file set the other request fields."}
        elif route.body == "*":
            operation["requestBody"] = {"content": {"application/json": {
                "schema": builder.ref(request_descriptor)}}}
        elif route.body:
            field = request_descriptor.fields_by_name[route.body]
            operation["requestBody"] = {"required": True, "content": {
                "application/json": {"schema": builder.field(field)}}}
        response_schema = builder.ref(route.response_class.DESCRIPTOR)
        if route.server_streaming:
            operation["responses"]["200"] = {
                "description": "Server-Sent Events: one `data:` JSON message per event, `id:` "
                               "its sequence number (send `Last-Event-ID` to resume), then "
                               "`event: end`; `event: error` carries an error body.",
                "content": {"text/event-stream": {"schema": {"type": "string"},
                                                  "x-event-schema": response_schema}}}
        else:
            operation["responses"]["200"] = {
                "description": "OK", "content": {"application/json": {"schema": response_schema}}}
        paths.setdefault(path, {})[route.http_method.lower()] = operation
    return {
        "openapi": "3.1.0",
        "info": {"title": title, "version": version, "description":
                 "REST mapping of the MTW gRPC services (from their google.api.http "
                 "annotations). Authenticate with `Authorization: Bearer mtw_…`."},
        "paths": paths,
        "components": {
            "schemas": builder.schemas,
            "securitySchemes": {"apiKey": {"type": "http", "scheme": "bearer"}},
        },
        "security": [{"apiKey": []}],
    }
