"""The bad-input corpus sent over the network: each file gets the right status, a message
that names the problem (line and field where it applies), and leaves nothing stored."""

from __future__ import annotations

import grpc
import pytest

from services.common import errors
from services.common.interceptors import error_details
from services.dataset_svc import convert
from services.dataset_svc.domain import ingest
from tests.unit.dataset.corpus import bad_inputs

CASES = bad_inputs()


def _status_of(class_name: str) -> grpc.StatusCode:
    cls = getattr(errors, class_name, None) or getattr(ingest, class_name)
    return grpc.StatusCode[cls.code]


@pytest.fixture(scope="module")
async def dataset(dataset_svc):
    return await dataset_svc.create_dataset("alpha", "bad-inputs")


def test_corpus_is_large_enough():
    assert len(CASES) >= 30


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
async def test_bad_input(dataset_svc, dataset, case):
    _, file_name, data, options, error_class, expected_text = case
    before = await dataset_svc.version_rows()
    proto_options = convert.ingest_options_to_proto(options)
    proto_options.file_name = file_name
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await dataset_svc.upload(dataset.name, data, options=proto_options, chunk_size=64 * 1024)
    assert err.value.code() == _status_of(error_class), err.value.details()
    bad_request, info = error_details(err.value)
    text = err.value.details() + " ".join(
        v.field + " " + v.description for v in (bad_request.field_violations if bad_request else [])
    )
    assert expected_text.lower() in text.lower()
    assert info is not None and info.reason
    assert await dataset_svc.version_rows() == before
    assert await dataset_svc.stored_keys("datasets/projects/alpha/datasets/bad-inputs/") == []
