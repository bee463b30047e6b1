"""What the images run besides the services: the container health check and the
API-key tool, against a real gRPC health service, an HTTP server and PostgreSQL."""

from __future__ import annotations

import asyncio
import os
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1._async import HealthServicer

from services.common.errors import Unauthenticated

ROOT = Path(__file__).resolve().parents[2]
API_KEYS = ROOT / "deploy" / "tools" / "api_keys.py"


async def _run(*argv: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, *argv, cwd=ROOT, env={**os.environ, **(env or {})},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout=60)
    return proc.returncode, out.decode(), err.decode()


async def test_healthcheck_passes_only_while_the_server_is_serving():
    health = HealthServicer()
    server = grpc.aio.server()
    health_pb2_grpc.add_HealthServicer_to_server(health, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    check = ("-m", "services.common.healthcheck")
    try:
        await health.set("", health_pb2.HealthCheckResponse.SERVING)
        # The image's HEALTHCHECK passes no arguments: the port comes from GRPC_PORT.
        code, out, _ = await _run(*check, env={"GRPC_PORT": str(port)})
        assert code == 0 and "SERVING" in out
        await health.set("", health_pb2.HealthCheckResponse.NOT_SERVING)
        code, _, err = await _run(*check, "--address", f"127.0.0.1:{port}")
        assert code == 1 and "NOT_SERVING" in err
    finally:
        await server.stop(0)
    code, _, err = await _run(*check, "--address", f"127.0.0.1:{port}", "--timeout", "1")
    assert code == 1 and ("UNAVAILABLE" in err or "DEADLINE_EXCEEDED" in err)


class _Health(BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200 if self.path == "/healthz" else 503)
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture
def http_server():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Health)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


async def test_healthcheck_of_an_http_endpoint(http_server):
    code, out, _ = await _run("-m", "services.common.healthcheck", "--http", f"{http_server}/healthz")
    assert code == 0 and "HTTP 200" in out
    code, _, err = await _run("-m", "services.common.healthcheck", "--http", f"{http_server}/other")
    assert code == 1 and "HTTP 503" in err


async def test_api_key_tool_creates_lists_and_revokes_keys(database_url, key_store):
    env = {"DATABASE_URL": database_url}
    code, out, err = await _run(str(API_KEYS), "create", "tool-project", "--display-name", "Tool", env=env)
    assert code == 0, err
    key = out.strip()
    principal = await key_store.authenticate(key)
    assert principal.project == "tool-project"

    code, out, _ = await _run(str(API_KEYS), "list", "tool-project", env=env)
    assert code == 0 and out.startswith(principal.key_id) and "active" in out

    code, _, _ = await _run(str(API_KEYS), "revoke", principal.key_id, env=env)
    assert code == 0
    with pytest.raises(Unauthenticated):
        await key_store.authenticate(key)

    code, _, err = await _run(str(API_KEYS), "revoke", "000000000000", env=env)
    assert code == 1 and err.startswith("error:")
