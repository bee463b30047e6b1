"""Container health check: ``python -m services.common.healthcheck`` exits 0 only when healthy.

gRPC services: asks the standard ``grpc.health.v1.Health/Check`` on
``127.0.0.1:$GRPC_PORT`` (the whole server, service ``""``) and passes only on SERVING,
which ``services.common.server`` reports once the database and object store answer.
HTTP (the gateway): ``--http URL`` passes on any 2xx answer.

Images carry this instead of ``grpc_health_probe``, which is not on PyPI. Kubernetes
uses its native ``grpc:`` probe against the same health service instead.
"""

from __future__ import annotations

import argparse
import os
import sys
import urllib.error
import urllib.request

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc


def check_grpc(address: str, service: str = "", timeout: float = 3.0) -> tuple[bool, str]:
    """(healthy, what was seen) for the gRPC server at ``address``."""
    with grpc.insecure_channel(address) as channel:
        try:
            response = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=service), timeout=timeout
            )
        except grpc.RpcError as error:
            return False, f"{error.code().name}: {error.details()}"
    status = health_pb2.HealthCheckResponse.ServingStatus.Name(response.status)
    return response.status == health_pb2.HealthCheckResponse.SERVING, status


def check_http(url: str, timeout: float = 3.0) -> tuple[bool, str]:
    """(healthy, what was seen) for a plain HTTP GET of ``url``."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return 200 <= response.status < 300, f"HTTP {response.status}"
    except urllib.error.HTTPError as error:
        return False, f"HTTP {error.code}"
    except OSError as error:
        return False, str(error)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--address",
        default=f"127.0.0.1:{os.environ.get('GRPC_PORT', '50051')}",
        help="gRPC host:port (default 127.0.0.1:$GRPC_PORT)",
    )
    parser.add_argument("--service", default="", help="service name to ask about ('' = the server)")
    parser.add_argument("--http", metavar="URL", help="check an HTTP endpoint instead of gRPC")
    parser.add_argument("--timeout", type=float, default=3.0)
    args = parser.parse_args(argv)
    if args.http:
        healthy, seen = check_http(args.http, args.timeout)
        target = args.http
    else:
        healthy, seen = check_grpc(args.address, args.service, args.timeout)
        target = args.address
    print(f"{target}: {seen}", file=sys.stdout if healthy else sys.stderr)
    return 0 if healthy else 1


if __name__ == "__main__":
    sys.exit(main())
