"""Expand what a person types into full resource names.

A dataset may be given as ``my-data`` (expanded with the client's project) or
``projects/p/datasets/my-data``; a version as ``my-data@3``, ``my-data/versions/3``,
``projects/p/datasets/my-data/versions/3`` or ``projects/p/datasets/my-data@3``.
Anything with a ``name`` attribute (a returned message) is taken by its name.
"""

from __future__ import annotations

import re
from typing import Any

from mtw.errors import ConfigurationError

_ID = r"[A-Za-z0-9][A-Za-z0-9_-]*"
_DATASET_FULL = re.compile(rf"projects/(?P<project>{_ID})/datasets/(?P<dataset>{_ID})")
_VERSION = re.compile(
    rf"(?:projects/(?P<project>{_ID})/datasets/)?(?P<dataset>{_ID})"
    rf"(?:/versions/|@)(?P<version>{_ID})"
)

LATEST = "latest"


class InvalidResourceName(ConfigurationError):
    """A resource reference that cannot be understood."""


def _as_str(ref: Any) -> str:
    name = getattr(ref, "name", ref)
    if not isinstance(name, str) or not name.strip():
        raise InvalidResourceName(f"expected a resource name, got {ref!r}")
    return name.strip().strip("/")


def project_name(project: str) -> str:
    return project if project.startswith("projects/") else f"projects/{project}"


def dataset_name(ref: Any, project: str) -> str:
    """``d`` → ``projects/{project}/datasets/d``; full names pass through."""
    text = _as_str(ref)
    if text.startswith("projects/"):
        if not _DATASET_FULL.fullmatch(text):
            raise InvalidResourceName(
                f"expected projects/{{project}}/datasets/{{dataset}}, got {text!r}"
            )
        return text
    if not re.fullmatch(_ID, text):
        raise InvalidResourceName(f"{text!r} is not a dataset id or name")
    return f"projects/{project}/datasets/{text}"


def dataset_id(ref: Any) -> str:
    """The last segment of a dataset name (or the id itself)."""
    return _as_str(ref).rsplit("/", 1)[-1]


def parse_version(ref: Any, project: str) -> tuple[str, str]:
    """Split a version reference into ``(dataset name, version id)``.

    The version id may be ``latest``, which callers resolve with a GetDataset.
    """
    text = _as_str(ref)
    m = _VERSION.fullmatch(text)
    if m is None:
        raise InvalidResourceName(
            f"{text!r} is not a dataset version: use DATASET@N, DATASET/versions/N "
            "or projects/P/datasets/DATASET/versions/N"
        )
    parent = f"projects/{m['project'] or project}/datasets/{m['dataset']}"
    return parent, m["version"]


def version_name(ref: Any, project: str) -> str:
    """Full ``projects/p/datasets/d/versions/N`` name of a version reference."""
    parent, version = parse_version(ref, project)
    return f"{parent}/versions/{version}"


def short_version(name: str) -> str:
    """``projects/p/datasets/d/versions/3`` → ``d@3`` for display."""
    m = _VERSION.fullmatch(name or "")
    return f"{m['dataset']}@{m['version']}" if m else name
