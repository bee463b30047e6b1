"""One catalog (and one tiny-gpt2 build) for the whole unit-test session."""

from __future__ import annotations

from pathlib import Path

import pytest

from services.training_svc.domain.catalog import Catalog

# The shared data sits beside the repo, here and in CI.
SHARED_DATA = Path(__file__).resolve().parents[3].parent / "shared" / "data"


@pytest.fixture(scope="session")
def model_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("model-cache")


@pytest.fixture(scope="session")
def catalog(model_cache: Path) -> Catalog:
    return Catalog([], model_cache, corpus_dir=SHARED_DATA)


@pytest.fixture(scope="session")
def minilm(catalog):
    return catalog.get("all-minilm-l6-v2")


@pytest.fixture(scope="session")
def tiny(catalog):
    return catalog.get("tiny-gpt2")
