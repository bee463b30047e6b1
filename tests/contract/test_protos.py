"""Contract checks on the public protos: buf lint and breaking, field annotations, RPC names.

Needs the generated code (`make generate`) and, for the buf checks, node_modules
(`npm ci`). The google protos buf reads are copied by `make proto-deps`.
"""

import importlib
import pkgutil
import shutil
import subprocess
from pathlib import Path

import pytest
from google.api import field_behavior_pb2

import mtw

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("common", "dataset", "training", "evaluation", "registry", "insights")

EXPECTED_RPCS = {
    "mtw.insights.v1.InsightsService": {
        "GetRolloutConfig",
        "UpdateRolloutConfig",
        "CreateExperiment",
        "ListExperiments",
        "GetExperimentAssignment",
        "CreateSurveyResponse",
        "GetSurveyResponse",
        "RecordFunnelEvent",
        "GetSuccessReport",
    },
    "mtw.dataset.v1.DatasetService": {
        "CreateDataset",
        "GetDataset",
        "ListDatasets",
        "UpdateDataset",
        "DeleteDataset",
        "UploadDatasetVersion",
        "ImportDatasetVersion",
        "GetDatasetVersion",
        "ListDatasetVersions",
        "DeleteDatasetVersion",
        "PreviewDatasetVersion",
    },
    "mtw.training.v1.TuningService": {
        "ListBaseModels",
        "GetBaseModel",
        "EstimateTuningJob",
        "CreateTuningJob",
        "GetTuningJob",
        "ListTuningJobs",
        "CancelTuningJob",
        "ResumeTuningJob",
        "DeleteTuningJob",
        "WatchTuningJob",
        "ListTuningJobEvents",
    },
    "mtw.evaluation.v1.EvaluationService": {
        "CreateEvaluation",
        "GetEvaluation",
        "ListEvaluations",
        "CancelEvaluation",
        "DeleteEvaluation",
        "WatchEvaluation",
        "ListExampleResults",
        "ListRecommendations",
        "GetRecommendation",
        "ApplyRecommendation",
        "CompareEvaluations",
    },
    "mtw.registry.v1.RegistryService": {
        "CreateRegisteredModel",
        "GetRegisteredModel",
        "ListRegisteredModels",
        "UpdateRegisteredModel",
        "DeleteRegisteredModel",
        "CreateModelVersion",
        "GetModelVersion",
        "ListModelVersions",
        "UpdateModelVersion",
        "DeleteModelVersion",
        "SetAlias",
        "DeleteAlias",
        "RollbackAlias",
        "ListAliasHistory",
        "GetModelCard",
        "LinkEvaluation",
        "ExportModelVersion",
        "GetModelExport",
        "GetDownloadUrls",
        "Predict",
        "StreamPredict",
    },
}

# RPCs that stream, and in which direction: (client streaming, server streaming).
STREAMING_RPCS = {
    "mtw.dataset.v1.DatasetService.UploadDatasetVersion": (True, False),
    "mtw.training.v1.TuningService.WatchTuningJob": (False, True),
    "mtw.evaluation.v1.EvaluationService.WatchEvaluation": (False, True),
    "mtw.registry.v1.RegistryService.StreamPredict": (False, True),
}


def _pb2_modules():
    modules = []
    for package in PACKAGES:
        try:
            v1 = importlib.import_module(f"mtw.{package}.v1")
        except ModuleNotFoundError:
            pytest.fail(f"mtw.{package}.v1 is not generated: run `make generate`")
        for info in pkgutil.iter_modules(v1.__path__):
            if info.name.endswith("_pb2"):
                modules.append(importlib.import_module(f"{v1.__name__}.{info.name}"))
    assert modules, f"no generated modules under {mtw.__path__}"
    return modules


def _messages(descriptor):
    yield descriptor
    for nested in descriptor.nested_types:
        if not nested.GetOptions().map_entry:  # synthetic key/value of a map field
            yield from _messages(nested)


def _all_messages():
    for module in _pb2_modules():
        for message in module.DESCRIPTOR.message_types_by_name.values():
            yield from _messages(message)


def _services():
    for module in _pb2_modules():
        yield from module.DESCRIPTOR.services_by_name.values()


def _run(*command):
    return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=False)


def _buf(*args):
    if not (ROOT / "node_modules" / ".bin" / "buf").exists():
        pytest.skip("node_modules/.bin/buf missing: run `npm ci` (or `make install`)")
    if shutil.which("make") is None:
        pytest.skip("make is needed to copy the google protos (`make proto-deps`)")
    deps = _run("make", "-s", "proto-deps")
    assert deps.returncode == 0, deps.stdout + deps.stderr
    return _run("npx", "--no-install", "buf", *args)


def test_buf_lint_passes():
    result = _buf("lint", "protos")
    assert result.returncode == 0, result.stdout + result.stderr


def test_no_breaking_change_against_main():
    if _run("git", "rev-parse", "--verify", "--quiet", "main").returncode:
        pytest.skip("no `main` branch to compare with")
    _buf("--version")  # skips like the lint test when buf is missing
    result = _run("make", "-s", "buf-breaking")
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_field_has_a_field_behavior():
    # No exemptions: list responses are OUTPUT_ONLY and oneof members of
    # request wrappers (UploadDatasetVersionRequest) are OPTIONAL.
    missing = [
        field.full_name
        for message in _all_messages()
        for field in message.fields
        if not field.GetOptions().Extensions[field_behavior_pb2.field_behavior]
    ]
    assert not missing, "fields without google.api.field_behavior:\n" + "\n".join(missing)


def test_job_resources_share_job_state():
    from mtw.common.v1 import job_state_pb2

    names = {v.name for v in job_state_pb2.DESCRIPTOR.enum_types_by_name["JobState"].values}
    assert names == {
        f"JOB_STATE_{s}"
        for s in (
            "UNSPECIFIED",
            "QUEUED",
            "PREPARING",
            "RUNNING",
            "SUCCEEDED",
            "FAILED",
            "CANCELLING",
            "CANCELLED",
        )
    }
    jobs = [
        m
        for m in _all_messages()
        if m.full_name
        in {
            "mtw.training.v1.TuningJob",
            "mtw.evaluation.v1.Evaluation",
            "mtw.registry.v1.ModelExport",
        }
    ]
    assert len(jobs) == 3
    for job in jobs:
        assert job.fields_by_name["state"].enum_type.full_name == "mtw.common.v1.JobState"
        assert job.fields_by_name["failure"].message_type.full_name == "mtw.common.v1.JobFailure"


def test_services_have_the_expected_rpcs():
    found = {service.full_name: {m.name for m in service.methods} for service in _services()}
    assert found == EXPECTED_RPCS


def test_streaming_rpcs():
    for service in _services():
        for method in service.methods:
            expected = STREAMING_RPCS.get(method.full_name, (False, False))
            assert (method.client_streaming, method.server_streaming) == expected, method.full_name


def test_list_methods_are_paged():
    for service in _services():
        for method in service.methods:
            if not method.name.startswith("List"):
                continue
            request = method.input_type.fields_by_name
            assert {"page_size", "page_token", "filter"} <= set(request.keys()), method.full_name
            assert "next_page_token" in set(method.output_type.fields_by_name.keys()), (
                method.full_name
            )
