"""``python -m gateway``: serve the REST API and the dashboard until SIGTERM/Ctrl-C."""

from __future__ import annotations

import logging

import uvicorn

from gateway.server import build_app
from gateway.settings import GatewaySettings
from services.common.telemetry import configure_logging


def main() -> None:
    settings = GatewaySettings()
    configure_logging(settings.service_name, settings.log_level)
    app = build_app(settings)
    logging.getLogger(__name__).info(
        "gateway listening", extra={"url": f"http://{settings.http_host}:{settings.http_port}"})
    # uvicorn handles SIGTERM/SIGINT: stops accepting, finishes requests, runs the lifespan end.
    uvicorn.run(app, host=settings.http_host, port=settings.http_port, log_config=None,
                access_log=True, timeout_graceful_shutdown=5)


if __name__ == "__main__":
    main()
