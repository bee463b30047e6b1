"""Every dataset RPC with another project's key answers NOT_FOUND and changes nothing."""

from __future__ import annotations

import grpc
import pytest
from google.protobuf import field_mask_pb2

from mtw.dataset.v1 import dataset_pb2
from mtw.dataset.v1 import dataset_service_pb2 as pb
from mtw.dataset.v1 import dataset_version_pb2 as vpb

from .conftest import upload_messages


@pytest.fixture(scope="module")
async def alpha_version(dataset_svc):
    dataset = await dataset_svc.create_dataset("alpha", "private-data")
    data = b"text,label\n" + b"".join(b"row %d,%s\n" % (i, b"ab"[i % 2:i % 2 + 1]) for i in range(40))
    return await dataset_svc.upload(dataset.name, data)


async def test_foreign_key_sees_nothing(dataset_svc, alpha_version):
    stub, beta = dataset_svc.stub, dataset_svc.auth("beta")
    dataset_name = alpha_version.name.split("/versions/")[0]
    calls = {
        "CreateDataset": stub.CreateDataset(
            pb.CreateDatasetRequest(parent="projects/alpha", dataset_id="intruder", dataset=dataset_pb2.Dataset()),
            metadata=beta),
        "GetDataset": stub.GetDataset(pb.GetDatasetRequest(name=dataset_name), metadata=beta),
        "ListDatasets": stub.ListDatasets(pb.ListDatasetsRequest(parent="projects/alpha"), metadata=beta),
        "UpdateDataset": stub.UpdateDataset(
            pb.UpdateDatasetRequest(dataset=dataset_pb2.Dataset(name=dataset_name, description="mine"),
                                    update_mask=field_mask_pb2.FieldMask(paths=["description"])),
            metadata=beta),
        "DeleteDataset": stub.DeleteDataset(pb.DeleteDatasetRequest(name=dataset_name, force=True), metadata=beta),
        "UploadDatasetVersion": stub.UploadDatasetVersion(
            upload_messages(dataset_name, b"text\nhello\n", vpb.IngestOptions(file_name="x.csv"), 1024),
            metadata=beta),
        "ImportDatasetVersion": stub.ImportDatasetVersion(
            pb.ImportDatasetVersionRequest(parent=dataset_name,
                                           source_uri=dataset_svc.running.objects.uri("projects/alpha/imports/a.csv")),
            metadata=beta),
        "GetDatasetVersion": stub.GetDatasetVersion(pb.GetDatasetVersionRequest(name=alpha_version.name),
                                                    metadata=beta),
        "ListDatasetVersions": stub.ListDatasetVersions(pb.ListDatasetVersionsRequest(parent=dataset_name),
                                                        metadata=beta),
        "DeleteDatasetVersion": stub.DeleteDatasetVersion(pb.DeleteDatasetVersionRequest(name=alpha_version.name),
                                                          metadata=beta),
        "PreviewDatasetVersion": stub.PreviewDatasetVersion(
            pb.PreviewDatasetVersionRequest(name=alpha_version.name), metadata=beta),
    }
    rpc_names = set(pb.DESCRIPTOR.services_by_name["DatasetService"].methods_by_name)
    assert set(calls) == rpc_names, "every RPC of the service is covered"
    for rpc, call in calls.items():
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await call
        assert err.value.code() == grpc.StatusCode.NOT_FOUND, rpc
        assert "alpha" in err.value.details() or "not found" in err.value.details(), rpc

    # Nothing changed for the owner.
    still = await stub.GetDatasetVersion(pb.GetDatasetVersionRequest(name=alpha_version.name),
                                         metadata=dataset_svc.auth("alpha"))
    assert still == alpha_version
    owner_view = await stub.GetDataset(pb.GetDatasetRequest(name=dataset_name), metadata=dataset_svc.auth("alpha"))
    assert owner_view.description == ""
