"""The REST surface, read from the services' ``google.api.http`` annotations.

Every RPC of every ``mtw.*.v1`` service module that carries an annotation becomes a
:class:`Route`: an HTTP method, a compiled path template and the body mapping. A new
annotated RPC appears here (and in the OpenAPI spec) without gateway code.
"""

from __future__ import annotations

import importlib
import pkgutil
import re
from dataclasses import dataclass, field
from functools import cached_property

from google.api import annotations_pb2, http_pb2
from google.protobuf import descriptor as _descriptor
from google.protobuf import message_factory

import mtw

HTTP_METHODS = ("get", "put", "post", "delete", "patch")
# `*` matches one path segment; the verb (`:cancel`) is never part of a segment.
_SEGMENT = r"[^/:]+"
_ANY_SEGMENTS = r"[^:]+"


@dataclass(frozen=True)
class Variable:
    """A ``{field.path=pattern}`` part of a template, e.g. ``{name=projects/*/datasets/*}``."""

    field_path: str
    pattern: str  # "projects/*/datasets/*", or "*" for a bare {field}


@dataclass
class Template:
    """A parsed path template: ``/v1/{parent=projects/*}/datasets:verb``."""

    text: str
    parts: list[str | Variable]  # literal segments and variables, in order
    verb: str
    regex: re.Pattern[str] = field(init=False)

    def __post_init__(self) -> None:
        pieces = []
        for i, part in enumerate(self.parts):
            pieces.append("/")
            if isinstance(part, Variable):
                pattern = "/".join(
                    _ANY_SEGMENTS if s == "**" else _SEGMENT if s == "*" else re.escape(s)
                    for s in part.pattern.split("/")
                )
                pieces.append(f"(?P<v{i}>{pattern})")
            else:
                pieces.append(re.escape(part))
        if self.verb:
            pieces.append(":" + re.escape(self.verb))
        self.regex = re.compile("".join(pieces) + "$")

    @classmethod
    def parse(cls, text: str) -> Template:
        path, verb = text, ""
        # The verb follows the last segment, outside any {…}.
        tail = text.rsplit("/", 1)[-1]
        if ":" in tail and "}" not in tail.rsplit(":", 1)[1]:
            path, verb = text.rsplit(":", 1)
        parts: list[str | Variable] = []
        for token in re.findall(r"\{[^}]*\}|[^/{}]+", path):
            if token.startswith("{"):
                name, _, pattern = token[1:-1].partition("=")
                parts.append(Variable(name, pattern or "*"))
            else:
                parts.append(token)
        return cls(text, parts, verb)

    def match(self, path: str) -> dict[str, str] | None:
        """Field path → value for a request path, or None when it does not fit."""
        m = self.regex.match(path)
        if m is None:
            return None
        return {
            part.field_path: m.group(f"v{i}")
            for i, part in enumerate(self.parts)
            if isinstance(part, Variable)
        }

    @property
    def variables(self) -> list[Variable]:
        return [p for p in self.parts if isinstance(p, Variable)]

    @property
    def literal_score(self) -> int:
        """More literal text first, so `…/tuningJobs:estimate` wins over `{name=…/*}`."""
        return sum(len(p) for p in self.parts if isinstance(p, str)) + (100 if self.verb else 0)


@dataclass
class Route:
    """One HTTP binding of one RPC."""

    method: _descriptor.MethodDescriptor
    http_method: str  # upper case
    template: Template
    body: str  # "", "*" or a top-level field name
    binding: int = 0  # 0: the rule itself; 1, 2…: its additional_bindings

    @property
    def service(self) -> str:
        return self.method.containing_service.full_name

    @property
    def grpc_path(self) -> str:
        return f"/{self.service}/{self.method.name}"

    @property
    def operation_id(self) -> str:
        """Unique per binding (OpenAPI requires it): ``RegistryService.Predict``, then
        ``RegistryService.Predict.1`` for its first additional binding."""
        base = f"{self.method.containing_service.name}.{self.method.name}"
        return f"{base}.{self.binding}" if self.binding else base

    @property
    def package(self) -> str:
        """Short name of the owning service (``dataset`` for ``mtw.dataset.v1``)."""
        return self.service.split(".")[1]

    @property
    def client_streaming(self) -> bool:
        return self.method.client_streaming

    @property
    def server_streaming(self) -> bool:
        return self.method.server_streaming

    @cached_property
    def request_class(self):
        return message_factory.GetMessageClass(self.method.input_type)

    @cached_property
    def response_class(self):
        return message_factory.GetMessageClass(self.method.output_type)


def _bindings(rule: http_pb2.HttpRule) -> list[tuple[str, str, str]]:
    out = []
    for r in [rule, *rule.additional_bindings]:
        pattern = r.WhichOneof("pattern")
        if pattern in HTTP_METHODS:
            out.append((pattern.upper(), getattr(r, pattern), r.body))
        elif pattern == "custom":
            out.append((r.custom.kind.upper(), r.custom.path, r.body))
    return out


def routes_of(service: _descriptor.ServiceDescriptor) -> list[Route]:
    routes = []
    for method in service.methods:
        options = method.GetOptions()
        if not options.HasExtension(annotations_pb2.http):
            continue
        for binding, (verb, path, body) in enumerate(_bindings(options.Extensions[annotations_pb2.http])):
            routes.append(Route(method, verb, Template.parse(path), body, binding))
    return routes


def discover_services() -> list[_descriptor.ServiceDescriptor]:
    """Every service defined in a generated ``mtw/<pkg>/v1/*_pb2`` module."""
    services = []
    for pkg in sorted(p.name for p in pkgutil.iter_modules(mtw.__path__)):
        try:
            version = importlib.import_module(f"mtw.{pkg}.v1")
        except ImportError:
            continue
        for mod in sorted(m.name for m in pkgutil.iter_modules(version.__path__)):
            if not mod.endswith("_pb2"):
                continue
            module = importlib.import_module(f"mtw.{pkg}.v1.{mod}")
            services.extend(module.DESCRIPTOR.services_by_name.values())
    return services


class RouteTable:
    """All routes; finds the one for (HTTP method, path)."""

    def __init__(self, routes: list[Route]) -> None:
        self.routes = sorted(routes, key=lambda r: -r.template.literal_score)

    @classmethod
    def discover(cls) -> RouteTable:
        return cls([r for s in discover_services() for r in routes_of(s)])

    def find(self, http_method: str, path: str) -> tuple[Route, dict[str, str]] | None:
        for route in self.routes:
            if route.http_method != http_method:
                continue
            values = route.template.match(path)
            if values is not None:
                return route, values
        return None

    def services(self) -> list[str]:
        return sorted({r.service for r in self.routes})
