"""`python -m services.dataset_svc`: read settings, then serve until SIGTERM."""

import asyncio
import logging

from services.common.server import serve_forever
from services.common.telemetry import setup_telemetry
from services.dataset_svc import service
from services.dataset_svc.settings import DatasetSettings


async def main() -> None:
    settings = DatasetSettings()
    setup_telemetry(settings.service_name, settings)
    running = await service.start(settings)
    logging.getLogger(__name__).info("dataset service listening on %s:%d", settings.grpc_host, running.port)
    await serve_forever(running.server)
    await running.pool.close()


if __name__ == "__main__":
    asyncio.run(main())
