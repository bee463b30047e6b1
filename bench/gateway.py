"""The gateway's cost: REST GetDataset through the gateway vs the same gRPC call direct
(p50/p99 added latency, throughput under concurrency), and an upload through the
gateway vs direct to the dataset service, with the gateway's peak RSS growth. Same run.

    python -m bench.gateway [--calls 2000] [--concurrency 32] [--seconds 5] [--upload-mb 1024]

Goals: ≤ 2 ms added at p50; upload ≥ 0.8x direct; gateway RSS growth < 100 MB.
The S3 server, the dataset service and the gateway run as their own processes.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import aiohttp
import grpc
import httpx

import mtw
from bench.upload import RESULTS, RssSampler, _api_key, _drop, free_port, make_csv, wait_healthy
from mtw.dataset.v1 import dataset_service_pb2 as pb
from mtw.dataset.v1 import dataset_service_pb2_grpc
from services.common import db

ADMIN_URL = os.environ.get("DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")


def wait_http(url: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(url + "/healthz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError("the gateway did not answer")


def percentile(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1]


def latencies(calls: int, rest, direct) -> dict[str, list[float]]:
    """Interleaved so both paths see the same machine load."""
    out: dict[str, list[float]] = {"rest": [], "grpc": []}
    for _ in range(calls):
        for name, fn in (("rest", rest), ("grpc", direct)):
            start = time.perf_counter()
            fn()
            out[name].append((time.perf_counter() - start) * 1000)
    return out


async def throughput(url: str, endpoint: str, key: str, name: str, concurrency: int, seconds: float) -> dict:
    """Calls per second with ``concurrency`` callers. REST goes through aiohttp, whose C
    parser keeps the client from being what is measured; /healthz through the same
    client and server shows the ceiling of any REST figure here."""
    auth = (("authorization", f"Bearer {key}"),)
    result = {}
    async with aiohttp.ClientSession(url, headers={"authorization": f"Bearer {key}"},
                                     connector=aiohttp.TCPConnector(limit=concurrency)) as client, \
            grpc.aio.insecure_channel(endpoint) as channel:
        stub = dataset_service_pb2_grpc.DatasetServiceStub(channel)

        async def rest_call():
            async with client.get(f"/v1/{name}") as response:
                response.raise_for_status()
                await response.read()

        async def grpc_call():
            await stub.GetDataset(pb.GetDatasetRequest(name=name), metadata=auth)

        async def health_call():
            async with client.get("/healthz") as response:
                response.raise_for_status()
                await response.read()

        async def worker(call, deadline: float) -> int:
            done = 0
            while time.perf_counter() < deadline:
                await call()
                done += 1
            return done

        for label, call in (("grpc", grpc_call), ("rest", rest_call), ("http_healthz", health_call)):
            start = time.perf_counter()
            counts = await asyncio.gather(*(worker(call, start + seconds) for _ in range(concurrency)))
            result[f"{label}_calls_per_s"] = round(sum(counts) / (time.perf_counter() - start), 1)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=5)
    parser.add_argument("--upload-mb", type=int, default=1024)
    args = parser.parse_args()
    database = f"mtw_bench_{uuid.uuid4().hex[:8]}"
    database_url = ADMIN_URL.rsplit("/", 1)[0] + "/" + database
    s3_port, grpc_port, http_port = free_port(), free_port(), free_port()
    size = args.upload_mb * 2**20
    env = {
        **os.environ, "DATABASE_URL": database_url, "S3_ENDPOINT": f"127.0.0.1:{s3_port}",
        "S3_ACCESS_KEY": "bench", "S3_SECRET_KEY": "bench-secret", "S3_BUCKET": "bench",
        "GRPC_PORT": str(grpc_port), "HTTP_PORT": str(http_port), "LOG_LEVEL": "WARNING",
        "MTW_DATASET_ENDPOINT": f"127.0.0.1:{grpc_port}", "HF_HUB_OFFLINE": "1",
        "DATASET_MAX_UPLOAD_BYTES": str(4 * size + 2**20), "DATASET_PROJECT_QUOTA_BYTES": str(10 * size + 2**30),
    }
    url, endpoint = f"http://127.0.0.1:{http_port}", f"127.0.0.1:{grpc_port}"
    children: list[subprocess.Popen] = []
    result: dict = {}
    with tempfile.TemporaryDirectory() as tmp:
        try:
            children.append(subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1",
                                              "-p", str(s3_port)], env=env, stdout=subprocess.DEVNULL,
                                             stderr=subprocess.DEVNULL))
            asyncio.run(db.ensure_database(database_url))
            children.append(subprocess.Popen([sys.executable, "-m", "services.dataset_svc"], env=env))
            wait_healthy(grpc_port)
            gateway = subprocess.Popen([sys.executable, "-m", "gateway"], env={**env, "LOG_LEVEL": "ERROR"},
                                       stderr=subprocess.DEVNULL)
            children.append(gateway)
            wait_http(url)
            key = asyncio.run(_api_key(database_url))
            client = mtw.Client(endpoint, key, project="bench")
            client.datasets.create("bench")
            name = "projects/bench/datasets/bench"

            # Latency, one call at a time, keep-alive connections on both sides.
            with httpx.Client(base_url=url, headers={"authorization": f"Bearer {key}"}) as http, \
                    grpc.insecure_channel(endpoint) as channel:
                stub = dataset_service_pb2_grpc.DatasetServiceStub(channel)
                auth = (("authorization", f"Bearer {key}"),)
                rest = lambda: http.get(f"/v1/{name}").raise_for_status()
                direct = lambda: stub.GetDataset(pb.GetDatasetRequest(name=name), metadata=auth)
                latencies(100, rest, direct)  # warm-up
                lat = latencies(args.calls, rest, direct)
            for q in (50, 99):
                r, g = percentile(lat["rest"], q), percentile(lat["grpc"], q)
                result[f"p{q}_rest_ms"], result[f"p{q}_grpc_ms"] = round(r, 3), round(g, 3)
                result[f"p{q}_added_ms"] = round(r - g, 3)
            result.update(asyncio.run(throughput(url, endpoint, key, name, args.concurrency, args.seconds)))
            result["throughput_ratio"] = round(result["rest_calls_per_s"] / result["grpc_calls_per_s"], 3)
            result["concurrency"] = args.concurrency

            # Upload: direct (SDK client stream) vs through the gateway (raw HTTP body).
            data = Path(tmp) / "bench.csv"
            make_csv(data, size)
            actual = data.stat().st_size
            start = time.perf_counter()
            client.datasets.upload("bench", data)
            direct_s = time.perf_counter() - start
            sampler = RssSampler(gateway.pid)
            before = sampler.peak
            sampler.start()
            start = time.perf_counter()
            with open(data, "rb") as body:
                r = httpx.post(f"{url}/v1/{name}/versions:upload", content=iter(lambda: body.read(2**20), b""),
                               params={"header.options.file_name": "bench.csv", "header.size_bytes": actual},
                               headers={"authorization": f"Bearer {key}"}, timeout=3600)
            gateway_s = time.perf_counter() - start
            sampler.running = False
            sampler.join()
            r.raise_for_status()
            result.update({
                "upload_mb": round(actual / 2**20, 1),
                "upload_direct_mb_s": round(actual / 2**20 / direct_s, 1),
                "upload_gateway_mb_s": round(actual / 2**20 / gateway_s, 1),
                "upload_ratio": round(direct_s / gateway_s, 3),
                "gateway_rss_before_mb": round(before / 2**20, 1),
                "gateway_peak_rss_growth_mb": round((sampler.peak - before) / 2**20, 1),
            })
        finally:
            for child in reversed(children):
                child.terminate()
                child.wait(timeout=30)
            asyncio.run(_drop(database))
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "gateway.json").write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))
    print(f"goal: p50 added <= 2 ms -> {'met' if result['p50_added_ms'] <= 2 else 'NOT met'}; "
          f"upload >= 0.8x direct -> {'met' if result['upload_ratio'] >= 0.8 else 'NOT met'}; "
          f"gateway RSS growth < 100 MB -> {'met' if result['gateway_peak_rss_growth_mb'] < 100 else 'NOT met'}")


if __name__ == "__main__":
    main()
