"""`python -m services.dataset_svc`: read settings, then serve until SIGTERM."""

import os

# Arrow's C++ code takes its default allocator from this variable when it first needs
# one; pa.set_memory_pool only changes what Python passes in. Set before pyarrow loads,
# so that parsing, compute and Parquet all use the one allocator configured below
# instead of spreading over two heaps.
os.environ.setdefault("ARROW_DEFAULT_MEMORY_POOL", "jemalloc")

import asyncio
import ctypes
import logging

import pyarrow as pa

from services.common.server import serve_forever
from services.common.telemetry import setup_telemetry
from services.dataset_svc import service
from services.dataset_svc.settings import DatasetSettings

# mallopt parameters, from malloc.h
_M_MMAP_THRESHOLD = -3
_M_ARENA_MAX = -8


def configure_memory() -> None:
    """Keep an upload's resident size near its working set rather than the allocators'
    high-water marks: Arrow buffers from jemalloc, returned to the system as soon as
    they are freed; and, for everything else, glibc tuned as below."""
    pa.set_memory_pool(pa.jemalloc_memory_pool())
    pa.jemalloc_set_decay_ms(0)
    _tune_glibc_malloc()


def _tune_glibc_malloc() -> None:
    """glibc gives threads that allocate their own heaps ("arenas", up to 8 per core)
    and keeps freed memory in each; two shared arenas keep the gRPC, upload and ingest
    threads close to the working set. Blocks of 1 MiB and more (received chunks, upload
    parts) are mapped on their own and unmapped when freed: by default glibc raises
    that threshold after the first such free, and from then on places them in the
    arenas, where the holes they leave between smaller blocks stay resident. Must run
    before the threads start; a no-op without glibc."""
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return
    libc.mallopt(_M_ARENA_MAX, 2)
    libc.mallopt(_M_MMAP_THRESHOLD, 1 << 20)


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
