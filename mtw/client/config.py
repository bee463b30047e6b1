"""Where the services are and who the caller is, resolved once from arguments and env.

Each MTW service listens on its own port. For a service, the endpoint is, in order:
an explicit per-service endpoint, the ``endpoint`` argument, ``MTW_<SERVICE>_ENDPOINT``,
``MTW_ENDPOINT``, then ``127.0.0.1:<default port>``. An endpoint given as a bare host
(no port) gets the service's default port, so ``MTW_ENDPOINT=myhost`` reaches every
service on that machine.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field

from mtw.errors import ConfigurationError

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PROJECT = "dev"
DEFAULT_TIMEOUT = 30.0
DEFAULT_RETRIES = 3


@dataclass(frozen=True)
class ServiceSpec:
    """One MTW service: its short name (``dataset``), env prefix and default port."""

    name: str
    default_port: int

    @property
    def env_var(self) -> str:
        return f"MTW_{self.name.upper()}_ENDPOINT"


SERVICES: dict[str, ServiceSpec] = {
    s.name: s
    for s in (
        ServiceSpec("dataset", 50051),
        ServiceSpec("training", 50052),
        ServiceSpec("evaluation", 50053),
        ServiceSpec("registry", 50054),
        ServiceSpec("insights", 50055),
    )
}

MISSING_KEY_MESSAGE = "Set MTW_API_KEY or pass api_key=…; `make run` prints a development key"


@dataclass(frozen=True)
class ClientConfig:
    """Resolved settings shared by :class:`mtw.Client` and :class:`mtw.AsyncClient`."""

    api_key: str
    project: str
    endpoints: Mapping[str, str] = field(default_factory=dict)
    timeout: float | None = DEFAULT_TIMEOUT
    retries: int = DEFAULT_RETRIES
    # Seconds of the first retry wait; doubles on each attempt, capped at 10 s.
    backoff: float = 0.25

    @classmethod
    def resolve(
        cls,
        endpoint: str | Mapping[str, str] | None = None,
        api_key: str | None = None,
        *,
        project: str | None = None,
        timeout: float | None = DEFAULT_TIMEOUT,
        retries: int = DEFAULT_RETRIES,
        backoff: float = 0.25,
        env: Mapping[str, str] | None = None,
    ) -> ClientConfig:
        env = os.environ if env is None else env
        key = api_key or env.get("MTW_API_KEY", "").strip()
        if not key:
            raise ConfigurationError(MISSING_KEY_MESSAGE)
        if retries < 0:
            raise ConfigurationError("retries must be 0 or more")
        endpoints = {name: resolve_endpoint(spec, endpoint, env) for name, spec in SERVICES.items()}
        return cls(
            api_key=key,
            project=project or env.get("MTW_PROJECT", "").strip() or DEFAULT_PROJECT,
            endpoints=endpoints,
            timeout=timeout,
            retries=retries,
            backoff=backoff,
        )

    def endpoint_for(self, service: str) -> str:
        try:
            return self.endpoints[service]
        except KeyError:
            raise ConfigurationError(f"unknown MTW service {service!r}") from None


def resolve_endpoint(
    spec: ServiceSpec,
    endpoint: str | Mapping[str, str] | None,
    env: Mapping[str, str],
) -> str:
    """The endpoint of one service; see the module docstring for the order."""
    if isinstance(endpoint, Mapping):
        chosen = endpoint.get(spec.name)
    else:
        chosen = endpoint
    chosen = chosen or env.get(spec.env_var) or env.get("MTW_ENDPOINT") or DEFAULT_HOST
    return with_default_port(chosen.strip(), spec.default_port)


def with_default_port(endpoint: str, port: int) -> str:
    """``myhost`` → ``myhost:50051``; ``host:1234``, ``[::1]:1`` and ``unix:…`` unchanged."""
    if not endpoint:
        raise ConfigurationError("empty endpoint")
    if "://" in endpoint or endpoint.startswith(("unix:", "dns:", "ipv4:", "ipv6:")):
        return endpoint
    if endpoint.startswith("["):  # [ipv6] or [ipv6]:port
        return endpoint if "]:" in endpoint else f"{endpoint}:{port}"
    if endpoint.count(":") == 1:
        return endpoint
    if endpoint.count(":") > 1:  # a bare IPv6 address
        return f"[{endpoint}]:{port}"
    return f"{endpoint}:{port}"
