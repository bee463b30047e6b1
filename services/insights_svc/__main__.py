"""`python -m services.insights_svc`: read settings, then serve until SIGTERM."""

import asyncio
import logging

from services.common.server import serve_forever
from services.common.telemetry import setup_telemetry
from services.insights_svc import service
from services.insights_svc.settings import InsightsSettings


async def main() -> None:
    settings = InsightsSettings()
    setup_telemetry(settings.service_name, settings)
    running = await service.start(settings)
    logging.getLogger(__name__).info("insights service listening on %s:%d", settings.grpc_host, running.port)
    await serve_forever(running.server)
    await running.stop(grace=0)


if __name__ == "__main__":
    asyncio.run(main())
