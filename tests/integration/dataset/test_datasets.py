"""Dataset CRUD: ids, pages, filters, field masks, etags, and clear errors."""

from __future__ import annotations

import grpc
import pytest
from google.protobuf import field_mask_pb2

from mtw.dataset.v1 import dataset_pb2
from mtw.dataset.v1 import dataset_service_pb2 as pb
from services.common.interceptors import error_details


async def _error(call) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await call
    return err.value


async def test_create_get_update_with_etag(dataset_svc):
    stub, auth = dataset_svc.stub, dataset_svc.auth()
    created = await stub.CreateDataset(
        pb.CreateDatasetRequest(parent="projects/alpha", dataset_id="reviews",
                                dataset=dataset_pb2.Dataset(display_name="Reviews", labels={"team": "nlp"})),
        metadata=auth,
    )
    assert created.name == "projects/alpha/datasets/reviews" and created.etag
    again = await _error(stub.CreateDataset(
        pb.CreateDatasetRequest(parent="projects/alpha", dataset_id="reviews", dataset=dataset_pb2.Dataset()),
        metadata=auth,
    ))
    assert again.code() == grpc.StatusCode.ALREADY_EXISTS

    updated = await stub.UpdateDataset(
        pb.UpdateDatasetRequest(
            dataset=dataset_pb2.Dataset(name=created.name, description="Product reviews", etag=created.etag),
            update_mask=field_mask_pb2.FieldMask(paths=["description"]),
        ),
        metadata=auth,
    )
    assert updated.description == "Product reviews" and updated.display_name == "Reviews"
    assert updated.etag != created.etag
    stale = await _error(stub.UpdateDataset(
        pb.UpdateDatasetRequest(
            dataset=dataset_pb2.Dataset(name=created.name, description="x", etag=created.etag),
            update_mask=field_mask_pb2.FieldMask(paths=["description"]),
        ),
        metadata=auth,
    ))
    assert stale.code() == grpc.StatusCode.ABORTED
    bad_mask = await _error(stub.UpdateDataset(
        pb.UpdateDatasetRequest(dataset=dataset_pb2.Dataset(name=created.name),
                                update_mask=field_mask_pb2.FieldMask(paths=["version_count"])),
        metadata=auth,
    ))
    assert bad_mask.code() == grpc.StatusCode.INVALID_ARGUMENT
    bad_request, _ = error_details(bad_mask)
    assert bad_request.field_violations[0].field == "update_mask"


async def test_list_pages_and_filters(dataset_svc):
    stub = dataset_svc.stub
    auth = dataset_svc.auth("beta")
    for i in range(7):
        await stub.CreateDataset(
            pb.CreateDatasetRequest(parent="projects/beta", dataset_id=f"page-{i}",
                                    dataset=dataset_pb2.Dataset(display_name=f"Set {i}",
                                                                labels={"parity": "even" if i % 2 == 0 else "odd"})),
            metadata=auth,
        )
    names, token = [], ""
    while True:
        page = await stub.ListDatasets(
            pb.ListDatasetsRequest(parent="projects/beta", page_size=3, page_token=token), metadata=auth
        )
        names += [d.name for d in page.datasets]
        token = page.next_page_token
        if not token:
            break
    page_names = [n for n in names if "/page-" in n]
    assert len(page_names) == 7 and len(set(names)) == len(names)
    assert page_names[0].endswith("page-6")  # newest first

    even = await stub.ListDatasets(
        pb.ListDatasetsRequest(parent="projects/beta", filter='labels.parity="even"'), metadata=auth
    )
    assert sorted(d.name[-1] for d in even.datasets) == ["0", "2", "4", "6"]
    named = await stub.ListDatasets(
        pb.ListDatasetsRequest(parent="projects/beta", filter='display_name:"set 3"'), metadata=auth
    )
    assert [d.name for d in named.datasets] == ["projects/beta/datasets/page-3"]

    first = await stub.ListDatasets(pb.ListDatasetsRequest(parent="projects/beta", page_size=2), metadata=auth)
    tampered = first.next_page_token[:-3] + ("abc" if not first.next_page_token.endswith("abc") else "xyz")
    err = await _error(stub.ListDatasets(
        pb.ListDatasetsRequest(parent="projects/beta", page_size=2, page_token=tampered), metadata=auth
    ))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT and "page_token" in err.details()
    other_filter = await _error(stub.ListDatasets(
        pb.ListDatasetsRequest(parent="projects/beta", page_size=2, page_token=first.next_page_token,
                               filter='labels.parity="odd"'),
        metadata=auth,
    ))
    assert other_filter.code() == grpc.StatusCode.INVALID_ARGUMENT
    bad_filter = await _error(stub.ListDatasets(
        pb.ListDatasetsRequest(parent="projects/beta", filter="owner=me"), metadata=auth
    ))
    assert bad_filter.code() == grpc.StatusCode.INVALID_ARGUMENT and "owner" in bad_filter.details()


@pytest.mark.parametrize(
    ("request_", "field"),
    [
        (pb.CreateDatasetRequest(parent="projects/alpha", dataset_id="Bad_Id", dataset=dataset_pb2.Dataset()),
         "dataset_id"),
        (pb.CreateDatasetRequest(parent="project/alpha", dataset=dataset_pb2.Dataset()), "parent"),
        (pb.CreateDatasetRequest(parent="projects/alpha", dataset=dataset_pb2.Dataset(display_name="x" * 201)),
         "dataset.display_name"),
    ],
)
async def test_invalid_requests_name_the_field(dataset_svc, request_, field):
    err = await _error(dataset_svc.stub.CreateDataset(request_, metadata=dataset_svc.auth()))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    bad_request, info = error_details(err)
    assert bad_request.field_violations[0].field == field
    assert info is not None


async def test_missing_and_unauthenticated(dataset_svc):
    missing = await _error(dataset_svc.stub.GetDataset(
        pb.GetDatasetRequest(name="projects/alpha/datasets/nope"), metadata=dataset_svc.auth()
    ))
    assert missing.code() == grpc.StatusCode.NOT_FOUND and "nope" in missing.details()
    anonymous = await _error(dataset_svc.stub.GetDataset(pb.GetDatasetRequest(name="projects/alpha/datasets/x")))
    assert anonymous.code() == grpc.StatusCode.UNAUTHENTICATED
    wrong_key = await _error(dataset_svc.stub.GetDataset(
        pb.GetDatasetRequest(name="projects/alpha/datasets/x"),
        metadata=(("authorization", "Bearer mtw_abc_def"),),
    ))
    assert wrong_key.code() == grpc.StatusCode.UNAUTHENTICATED
