"""`python -m services.dataset_svc`: read settings, then serve until SIGTERM."""

import asyncio
import ctypes
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
    _limit_malloc_arenas(2)


def _limit_malloc_arenas(arenas: int) -> None:
    """glibc gives threads that allocate their own heaps ("arenas", up to 8 per core) and
    keeps freed memory in each: with the gRPC, upload and ingest threads, the resident
    size grows to several times the working set. A couple of shared arenas keep it close
    to the working set. Must run before the threads start; a no-op without glibc."""
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return
    m_arena_max = -8  # from malloc.h
    libc.mallopt(m_arena_max, arenas)


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
