"""Client stubs in other languages (`make stubs`) against a real dataset service.

Node.js (@grpc/grpc-js with the ts-proto stubs) and Go clients create a dataset,
stream a CSV through the client-streaming upload and read the quality report back
from a running dataset service, with an API key; the Java stubs and client compile.
The clients are the programs protos/README.md shows (tests/contract/clients/).
`make stubs-*` installs what a language needs (npm packages, Debian's Go/Java plugins
and libraries) when it is missing.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import shutil
import subprocess
import uuid
from pathlib import Path

import grpc
import pytest
import pytest_asyncio

from mtw.dataset.v1 import dataset_service_pb2 as pb
from mtw.dataset.v1 import dataset_service_pb2_grpc
from services.dataset_svc import service
from services.dataset_svc.settings import DatasetSettings

ROOT = Path(__file__).resolve().parents[2]
CLIENTS = Path(__file__).resolve().parent / "clients"
GEN = ROOT / "gen"
PROJECT = "contract"
LABELS = ("billing", "shipping", "returns")
ROWS_PER_LABEL = 400
DEBIAN_JARS = (
    "protobuf", "grpc-api", "grpc-stub", "grpc-protobuf", "grpc-protobuf-lite", "guava",
    "geronimo-annotation-1.3-spec",
)


def _make(target: str) -> None:
    result = subprocess.run(
        ["make", "-s", target], cwd=ROOT, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, f"make {target} failed:\n{result.stdout}\n{result.stderr}"


async def _run(*argv: str, env: dict[str, str] | None = None, cwd: Path = ROOT) -> str:
    """Run a client without blocking the event loop the dataset service serves on."""
    proc = await asyncio.create_subprocess_exec(
        *argv, cwd=cwd, env={**os.environ, **(env or {})},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout=120)
    assert proc.returncode == 0, f"{argv[0]} exited {proc.returncode}:\n{out.decode()}\n{err.decode()}"
    return out.decode()


@pytest.fixture(scope="module")
def support_csv(tmp_path_factory) -> Path:
    """1,200 support tickets in three classes (~120 KB: several upload chunks), one exact
    duplicate row and one e-mail address."""
    rng = random.Random(7)
    words = ["order", "parcel", "invoice", "refund", "card", "late", "broken", "size", "colour", "address", "account"]
    lines = ["text,label"]
    for label in LABELS:
        for i in range(ROWS_PER_LABEL):
            text = " ".join(rng.choice(words) for _ in range(12))
            lines.append(f'"{label} ticket {i}: {text}",{label}')
    lines[5] = '"please write to jane.doe@example.com about my refund",billing'
    lines[-1] = lines[-2]  # an exact duplicate (same label)
    path = tmp_path_factory.mktemp("contract") / "tickets.csv"
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def dataset_endpoint(service_settings, api_key):
    """(endpoint, API key) of a dataset service on a loopback port."""
    settings = service_settings(
        DatasetSettings, s3_bucket=f"mtw-contract-{uuid.uuid4().hex[:8]}", service_name="dataset-svc"
    )
    running = await service.start(settings)
    key = await api_key(PROJECT)
    yield f"127.0.0.1:{running.port}", key
    await running.stop()


@pytest.fixture(scope="module")
def ts_stubs() -> Path:
    _make("stubs-ts")
    return GEN / "js"


async def _python_view(endpoint: str, key: str, version: str) -> pb.DatasetVersion:
    async with grpc.aio.insecure_channel(endpoint) as channel:
        stub = dataset_service_pb2_grpc.DatasetServiceStub(channel)
        return await stub.GetDatasetVersion(
            pb.GetDatasetVersionRequest(name=version), metadata=(("authorization", f"Bearer {key}"),)
        )


def test_ts_stubs_cover_every_service(ts_stubs: Path):
    for package, service_name in (
        ("dataset", "DatasetService"), ("training", "TuningService"),
        ("evaluation", "EvaluationService"), ("registry", "RegistryService"),
    ):
        module = ts_stubs / "mtw" / package / "v1" / f"{package}_service.js"
        assert f"exports.{service_name}Client" in module.read_text(), module
        assert module.with_suffix("").with_suffix(".d.ts").exists()


async def test_node_client_uploads_and_reads_the_quality_report(ts_stubs, dataset_endpoint, support_csv):
    endpoint, key = dataset_endpoint
    out = await _run(
        "node", str(CLIENTS / "node" / "dataset_client.js"), str(support_csv),
        env={"MTW_ENDPOINT": endpoint, "MTW_API_KEY": key, "MTW_PROJECT": PROJECT},
    )
    result = json.loads(out.strip().splitlines()[-1])

    rows = len(LABELS) * ROWS_PER_LABEL
    assert result["dataset"].startswith(f"projects/{PROJECT}/datasets/node-")
    assert result["version"] == f"{result['dataset']}/versions/1"
    assert result["chunksSent"] > 1  # really streamed in several messages
    assert result["sizeBytes"] == support_csv.stat().st_size
    assert result["columns"] == ["text", "label"]
    assert sorted(result["labelNames"]) == sorted(LABELS)
    report = result["qualityReport"]
    assert report["rowCount"] == rows
    assert sum(s["rowCount"] for s in result["splits"]) == rows
    assert {c["label"]: c["count"] for c in report["labelDistribution"]} == {
        label: ROWS_PER_LABEL for label in LABELS
    }
    assert report["exactDuplicateRows"] == 1
    assert [p["kind"] for p in report["pii"]] == ["PII_KIND_EMAIL"]
    # Status codes reach the Node client as gRPC codes, with the service's message.
    assert result["unauthenticated"]["name"] == "UNAUTHENTICATED"
    assert "API key" in result["unauthenticated"]["details"]
    assert result["notFound"]["name"] == "NOT_FOUND"

    # The Node client's view is the Python client's view.
    version = await _python_view(endpoint, key, result["version"])
    assert version.quality_report.row_count == report["rowCount"]
    assert version.quality_report.exact_duplicate_rows == report["exactDuplicateRows"]
    assert [s.name for s in version.splits] == [s["name"] for s in result["splits"]]


async def test_go_client_uploads_and_reads_the_quality_report(dataset_endpoint, support_csv, tmp_path):
    await _run("make", "-s", "stubs-go")
    # Offline build against Debian's Go sources (GOPATH mode: no module download).
    gopath = tmp_path / "gopath"
    shutil.copytree(GEN / "go", gopath / "src/github.com/mtw/mtw/gen/go")
    shutil.copytree(CLIENTS / "go", gopath / "src/github.com/mtw/dataset-client")
    binary = tmp_path / "dataset-client"
    await _run(
        "go", "build", "-o", str(binary), "github.com/mtw/dataset-client", cwd=gopath,
        env={"GO111MODULE": "off", "GOPATH": f"{gopath}:/usr/share/gocode", "GOFLAGS": ""},
    )
    endpoint, key = dataset_endpoint
    out = await _run(
        str(binary), str(support_csv),
        env={"MTW_ENDPOINT": endpoint, "MTW_API_KEY": key, "MTW_PROJECT": PROJECT},
    )
    result = json.loads(out.strip().splitlines()[-1])
    assert result["dataset"].startswith(f"projects/{PROJECT}/datasets/go-")
    assert result["version"] == f"{result['dataset']}/versions/1"
    assert result["chunksSent"] > 1
    assert result["rowCount"] == len(LABELS) * ROWS_PER_LABEL
    assert result["labels"] == {label: ROWS_PER_LABEL for label in LABELS}
    assert result["exactDuplicates"] == 1


async def test_java_stubs_and_client_compile(tmp_path):
    await _run("make", "-s", "stubs-java")
    assert (GEN / "java/ai/mtw/dataset/v1/DatasetServiceGrpc.java").exists()
    assert (GEN / "java/ai/mtw/registry/v1/RegistryServiceGrpc.java").exists()
    classpath = ":".join(f"/usr/share/java/{jar}.jar" for jar in DEBIAN_JARS)
    # -sourcepath compiles the generated classes the client uses (and what they import).
    await _run(
        # C1 only and the serial GC: javac is a short run, this halves its CPU time.
        "javac", "-J-XX:TieredStopAtLevel=1", "-J-XX:+UseSerialGC", "-nowarn", "-d", str(tmp_path), "-cp", classpath, "-sourcepath", str(GEN / "java"),
        str(CLIENTS / "java" / "DatasetClient.java"),
    )
    assert (tmp_path / "DatasetClient.class").exists()
    assert (tmp_path / "ai/mtw/dataset/v1/DatasetServiceGrpc.class").exists()
