"""The MTW Python SDK: ``Client`` (sync) and ``AsyncClient`` (grpc.aio)."""

from mtw.client.client import AsyncClient, Client
from mtw.client.config import ClientConfig
from mtw.client.datasets import PreviewPage
from mtw.client.ingest import build_ingest_options

__all__ = ["AsyncClient", "Client", "ClientConfig", "PreviewPage", "build_ingest_options"]
