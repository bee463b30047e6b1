"""MTW, the Model Training Wizard — Python SDK.

    import mtw
    client = mtw.Client()                      # MTW_API_KEY, MTW_ENDPOINT from the env
    client.datasets.create("reviews")
    version = client.datasets.upload("reviews", "reviews.csv", task="classification")

The generated protobuf modules live in this package too (``mtw.dataset.v1`` …); the
SDK is imported lazily so that importing those stubs does not pull it in.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:
    from mtw import errors
    from mtw.client import AsyncClient, Client, ClientConfig, PreviewPage

_LAZY = {
    "Client": "mtw.client",
    "AsyncClient": "mtw.client",
    "ClientConfig": "mtw.client",
    "PreviewPage": "mtw.client",
}


def __getattr__(name: str) -> Any:
    import importlib

    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    if name == "errors":
        return importlib.import_module("mtw.errors")
    raise AttributeError(f"module 'mtw' has no attribute {name!r}")


__all__ = ["AsyncClient", "Client", "ClientConfig", "PreviewPage", "__version__", "errors"]
