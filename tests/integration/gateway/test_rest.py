"""REST through the gateway to the real dataset and training services: CRUD, streamed
uploads, the status table with error details, auth, the OpenAPI spec and tracing."""

from __future__ import annotations

import asyncio
import re
import uuid

import grpc
import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from gateway.errors import HTTP_STATUS
from gateway.openapi import openapi_path
from gateway.rules import RouteTable
from services.common.telemetry import setup_telemetry
from tests.integration.training.service_harness import brown_csv

from .conftest import CHUNK


def _dataset_id() -> str:
    return f"d-{uuid.uuid4().hex[:10]}"


def _violations(body: dict) -> dict[str, str]:
    for detail in body["error"]["details"]:
        if detail["@type"].endswith("google.rpc.BadRequest"):
            return {v["field"]: v["description"] for v in detail["field_violations"]}
    return {}


def _error_info(body: dict) -> dict:
    return next(d for d in body["error"]["details"] if d["@type"].endswith("google.rpc.ErrorInfo"))


async def test_dataset_crud(alpha):
    ds_id = _dataset_id()
    r = await alpha.post("/v1/projects/alpha/datasets", params={"dataset_id": ds_id},
                         json={"display_name": "Tickets", "labels": {"team": "support"}})
    assert r.status_code == 200, r.text
    created = r.json()
    name = f"projects/alpha/datasets/{ds_id}"
    assert created["name"] == name and created["display_name"] == "Tickets"
    assert created["version_count"] == 0 and created["size_bytes"] == "0"  # every field, int64 as text

    assert (await alpha.get(f"/v1/{name}")).json() == created

    r = await alpha.patch(f"/v1/{name}", params={"update_mask": "description"},
                          json={"description": "Support tickets, 2024", "display_name": "ignored"})
    assert r.status_code == 200, r.text
    assert r.json()["description"] == "Support tickets, 2024" and r.json()["display_name"] == "Tickets"

    r = await alpha.get("/v1/projects/alpha/datasets", params={"filter": 'labels.team="support"'})
    assert [d["name"] for d in r.json()["datasets"]] == [name]
    first = (await alpha.get("/v1/projects/alpha/datasets", params={"page_size": 1})).json()
    assert len(first["datasets"]) == 1 and first["next_page_token"]
    second = (await alpha.get("/v1/projects/alpha/datasets",
                              params={"page_size": 1, "page_token": first["next_page_token"]})).json()
    assert second["datasets"][0]["name"] != first["datasets"][0]["name"]

    r = await alpha.delete(f"/v1/{name}")
    assert r.status_code == 200 and r.json() == {}
    assert (await alpha.get(f"/v1/{name}")).status_code == 404


@pytest.mark.parametrize("form", ["raw", "multipart"])
async def test_upload_streams_a_file_larger_than_the_chunk_size(alpha, form):
    data = brown_csv(rows=600, max_chars=2000)
    assert len(data) > 4 * CHUNK
    ds = (await alpha.post("/v1/projects/alpha/datasets", params={"dataset_id": _dataset_id()},
                           json={})).json()["name"]
    url = f"/v1/{ds}/versions:upload"
    if form == "raw":
        r = await alpha.post(url, params={"header.options.file_name": "brown.csv",
                                          "header.options.split.seed": "7"}, content=data)
    else:  # form fields before the file set request fields, like query parameters
        r = await alpha.post(url, data={"header.options.file_name": "brown.csv",
                                        "header.options.split.seed": "7"},
                             files={"file": ("brown.csv", data, "text/csv")})
    assert r.status_code == 200, r.text
    version = r.json()
    assert version["name"] == f"{ds}/versions/1"
    assert version["size_bytes"] == str(len(data))
    assert version["options"]["file_name"] == "brown.csv" and version["options"]["split"]["seed"] == "7"
    assert version["task"] == "TASK_SEQUENCE_CLASSIFICATION"
    assert version["quality_report"]["row_count"] == "600"


async def test_multipart_names_outside_latin_1_are_read_as_utf8(alpha):
    ds = (await alpha.post("/v1/projects/alpha/datasets", params={"dataset_id": _dataset_id()},
                           json={})).json()["name"]
    r = await alpha.post(f"/v1/{ds}/versions:upload", data={"header.options.file_name": "données.csv"},
                         files={"file": ("données 📊.csv", b"text\nbonjour\nsalut\n" * 20, "text/csv")})
    assert r.status_code == 200, r.text
    assert r.json()["options"]["file_name"] == "données.csv"
    r = await alpha.post(f"/v1/{ds}/versions:upload", data={"📊": "x"}, files={"file": ("a.csv", b"text\nhi\n")})
    assert r.status_code == 400, r.text  # an unknown field, named as sent
    assert "📊" in r.json()["error"]["message"]


async def test_a_broken_file_is_refused_row_by_row(alpha):
    ds = (await alpha.post("/v1/projects/alpha/datasets", params={"dataset_id": _dataset_id()},
                           json={})).json()["name"]
    broken = b"text,label\nfine,a\nthis,has,three\nalso fine,b\nno label,\n" + b"more,a\nrows,b\n" * 5
    r = await alpha.post(f"/v1/{ds}/versions:upload", params={"header.options.file_name": "b.csv"},
                         content=broken)
    assert r.status_code == 400, r.text
    body = r.json()
    assert body["error"]["status"] == "INVALID_ARGUMENT"
    violations = _violations(body)
    assert "line:3" in violations and "expected 2 columns" in violations["line:3"]
    assert any(f.startswith("line:5") for f in violations)
    assert _error_info(body)["metadata"]["total_errors"] == "2"
    versions = (await alpha.get(f"/v1/{ds}/versions")).json()["dataset_versions"]
    assert versions == []  # nothing kept


async def _status_cases(gateway, alpha):
    """(what, response) for one call per row of the status table we can provoke."""
    ds_id = _dataset_id()
    await alpha.post("/v1/projects/alpha/datasets", params={"dataset_id": ds_id}, json={})
    with_version = (await alpha.get("/v1/projects/alpha/datasets",
                                    params={"filter": ""})).json()["datasets"]
    full = next(d["name"] for d in with_version if d["version_count"])
    async with gateway.client(None) as anonymous:
        no_key = await anonymous.get("/v1/projects/alpha/datasets")
        bad_key = await anonymous.get("/v1/projects/alpha/datasets",
                                      headers={"authorization": "Bearer mtw_abc123_notarealsecretatall"})
    return {
        "invalid argument": await alpha.post("/v1/projects/alpha/datasets",
                                             params={"dataset_id": "Not An Id"}, json={}),
        "not found": await alpha.get("/v1/projects/alpha/datasets/nope"),
        "other project": await alpha.get("/v1/projects/beta/datasets"),
        "already exists": await alpha.post("/v1/projects/alpha/datasets",
                                           params={"dataset_id": ds_id}, json={}),
        "failed precondition": await alpha.delete(f"/v1/{full}"),
        "resource exhausted": await alpha.post(
            f"/v1/projects/alpha/datasets/{ds_id}/versions:upload",
            params={"header.size_bytes": str(2**50)}, content=b"text\nx\n"),
        "no key": no_key,
        "bad key": bad_key,
        "service not configured": await alpha.get("/v1/projects/alpha/evaluations/e1"),
        "unknown parameter": await alpha.get("/v1/projects/alpha/datasets", params={"colour": "red"}),
        "bad json": await alpha.post("/v1/projects/alpha/datasets", content=b"{not json",
                                     headers={"content-type": "application/json"}),
        "no route": await alpha.get("/v1/nothing/here"),
    }


EXPECTED = {
    "invalid argument": (400, "INVALID_ARGUMENT", "dataset_id"),
    "not found": (404, "NOT_FOUND", None),
    "other project": (404, "NOT_FOUND", None),
    "already exists": (409, "ALREADY_EXISTS", None),
    "failed precondition": (400, "FAILED_PRECONDITION", None),
    "resource exhausted": (429, "RESOURCE_EXHAUSTED", None),
    "no key": (401, "UNAUTHENTICATED", None),
    "bad key": (401, "UNAUTHENTICATED", None),
    "service not configured": (503, "UNAVAILABLE", None),
    "unknown parameter": (400, "INVALID_ARGUMENT", "colour"),
    "bad json": (400, "INVALID_ARGUMENT", None),
    "no route": (404, "NOT_FOUND", None),
}


async def test_grpc_status_maps_to_http_with_details(gateway, alpha):
    assert set(HTTP_STATUS) == set(grpc.StatusCode)  # one table, every code
    cases = await _status_cases(gateway, alpha)
    for what, (http, status, field) in EXPECTED.items():
        r = cases[what]
        body = r.json()
        assert (r.status_code, body["error"]["status"]) == (http, status), (what, r.text)
        assert body["error"]["code"] == http and body["error"]["message"], what
        assert _error_info(body)["domain"] == "mtw.ai", what
        if field:
            assert field in _violations(body), (what, body)
    assert _error_info(cases["no key"].json())["reason"] == "API_KEY_MISSING"
    # another project's resource is hidden, not forbidden
    assert "beta" in cases["other project"].json()["error"]["message"]


async def test_dashboard_sign_in_keeps_the_key_in_a_strict_http_only_cookie(gateway):
    key = gateway.stack.keys["alpha"]
    async with gateway.client(None) as browser:
        refused = await browser.post("/auth/sign-in", json={"project": "alpha", "api_key": "mtw_x_nope"})
        assert refused.status_code == 401 and not refused.cookies
        wrong_project = await browser.post("/auth/sign-in", json={"project": "beta", "api_key": key})
        assert wrong_project.status_code == 404
        assert (await browser.get("/auth/session")).json() == {"signed_in": False}

        r = await browser.post("/auth/sign-in", json={"project": "alpha", "api_key": key})
        assert r.status_code == 200 and key not in r.text
        cookies = r.headers.get_list("set-cookie")
        key_cookie = next(c for c in cookies if c.startswith("mtw_key="))
        assert "HttpOnly" in key_cookie and "SameSite=strict" in key_cookie and "Path=/" in key_cookie
        assert (await browser.get("/auth/session")).json() == {
            "signed_in": True, "project": "alpha", "admin": False, "wizard_experiment": ""}
        assert (await browser.get("/v1/projects/alpha/datasets")).status_code == 200

        await browser.post("/auth/sign-out")
        assert (await browser.get("/v1/projects/alpha/datasets")).status_code == 401


async def test_openapi_spec_describes_exactly_the_routes(alpha):
    r = await alpha.get("/openapi.json")
    assert r.status_code == 200
    spec = r.json()
    table = RouteTable.discover()
    operations = {op["operationId"]: (path, method)
                  for path, methods in spec["paths"].items() for method, op in methods.items()}
    for route in table.routes:
        path, _ = openapi_path(route.template)
        assert operations[route.operation_id] == (path, route.http_method.lower())
        # the documented URL, filled in, reaches the same RPC
        concrete = re.sub(r"\{[^}]+\}", "x1", path)
        found, _ = table.find(route.http_method, concrete)
        assert found.operation_id == route.operation_id, (path, found.operation_id)
    for expected in ("DatasetService.UploadDatasetVersion", "TuningService.WatchTuningJob",
                     "TuningService.CancelTuningJob", "TuningService.ListBaseModels"):
        assert expected in operations
    upload = spec["paths"]["/v1/projects/{project}/datasets/{dataset}/versions:upload"]["post"]
    assert set(upload["requestBody"]["content"]) == {"application/octet-stream", "multipart/form-data"}
    watch = spec["paths"]["/v1/projects/{project}/tuningJobs/{tuningJob}:watch"]["get"]
    assert "text/event-stream" in watch["responses"]["200"]["content"]
    assert "mtw.training.v1.TuningJob" in spec["components"]["schemas"]
    docs = await alpha.get("/docs")
    assert docs.status_code == 200 and "/static/swagger/swagger-ui-bundle.js" in docs.text
    assert docs.headers["x-content-type-options"] == "nosniff"


async def test_the_http_request_starts_the_trace_the_services_continue(gateway, alpha):
    exporter = InMemorySpanExporter()
    setup_telemetry("gateway", extra_processors=[SimpleSpanProcessor(exporter)], configure_logs=False)
    exporter.clear()
    r = await alpha.get("/v1/projects/alpha/datasets", params={"page_size": 1})
    assert r.status_code == 200
    for _ in range(50):  # the HTTP span ends just after the response is sent
        spans = exporter.get_finished_spans()
        http = [s for s in spans if s.name == "GET /v1/{rest:path}"]
        if http:
            break
        await asyncio.sleep(0.05)
    # (In this single test process the HTTP span may be INTERNAL under a stray current
    # span; in the gateway's own process it is the SERVER span at the root.)
    grpc_spans = [s for s in spans if s.name.endswith("DatasetService/ListDatasets")]
    assert http and {s.kind for s in grpc_spans} == {trace.SpanKind.CLIENT, trace.SpanKind.SERVER}
    trace_id = http[0].context.trace_id
    assert {s.context.trace_id for s in grpc_spans} == {trace_id}
    client = next(s for s in grpc_spans if s.kind == trace.SpanKind.CLIENT)
    server = next(s for s in grpc_spans if s.kind == trace.SpanKind.SERVER)
    assert client.parent.span_id == http[0].context.span_id
    assert server.parent.span_id == client.context.span_id
