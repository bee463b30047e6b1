"""`python -m services.eval_svc`: read settings, then serve until SIGTERM."""

import asyncio
import logging

from services.common.server import serve_forever
from services.common.telemetry import setup_telemetry
from services.eval_svc import service
from services.eval_svc.settings import EvaluationSettings


async def main() -> None:
    settings = EvaluationSettings()
    setup_telemetry(settings.service_name, settings)
    running = await service.start(settings)
    logging.getLogger(__name__).info("evaluation service listening on %s:%d", settings.grpc_host, running.port)
    await serve_forever(running.server)
    # Runs live on in Ray as detached actors; the next start adopts them.
    await running.stop(grace=0)


if __name__ == "__main__":
    asyncio.run(main())
