"""`python -m services.registry_svc`: read settings, then serve until SIGTERM."""

import asyncio
import logging

from services.common.server import serve_forever
from services.common.telemetry import setup_telemetry
from services.registry_svc import service
from services.registry_svc.settings import RegistrySettings


async def main() -> None:
    settings = RegistrySettings()
    setup_telemetry(settings.service_name, settings)
    running = await service.start(settings)
    logging.getLogger(__name__).info("registry service listening on %s:%d", settings.grpc_host, running.port)
    await serve_forever(running.server)
    await running.stop(grace=0)


if __name__ == "__main__":
    asyncio.run(main())
