"""`python -m services.dataset_svc`: read settings, then serve until SIGTERM."""

import asyncio
import logging

import pyarrow as pa

from services.common.server import serve_forever
from services.common.telemetry import setup_telemetry
from services.dataset_svc import service
from services.dataset_svc.settings import DatasetSettings


def configure_memory() -> None:
    """Arrow buffers from jemalloc, returned to the system as soon as they are freed:
    an upload's memory then stays near its working set instead of the allocator's
    high-water mark."""
    pa.set_memory_pool(pa.jemalloc_memory_pool())
    pa.jemalloc_set_decay_ms(0)


async def main() -> None:
    configure_memory()
    settings = DatasetSettings()
    setup_telemetry(settings.service_name, settings)
    running = await service.start(settings)
    logging.getLogger(__name__).info("dataset service listening on %s:%d", settings.grpc_host, running.port)
    await serve_forever(running.server)
    await running.pool.close()


if __name__ == "__main__":
    asyncio.run(main())
