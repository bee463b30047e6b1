"""Streams through the gateway: a job's events as Server-Sent Events resumed with
Last-Event-ID, and the upload path's memory bound."""

from __future__ import annotations

import asyncio
import json
import tracemalloc

from gateway.streaming import multipart_upload, raw_upload
from mtw.dataset.v1 import dataset_service_pb2 as dpb


async def _read_sse(response, stop_after: int | None = None) -> list[dict]:
    """SSE frames as {"id", "event", "data"} dicts (comments and the retry hint skipped)."""
    frames, current = [], {}
    async for line in response.aiter_lines():
        if line == "":
            if "data" in current:
                frames.append(current)
                if stop_after is not None and len(frames) >= stop_after:
                    return frames
                if current.get("event") in ("end", "error"):
                    return frames
            current = {}
        elif not line.startswith(":"):
            field, _, value = line.partition(": ")
            current[field] = json.loads(value) if field == "data" else value
    return frames


async def test_watch_as_server_sent_events_resumes_with_last_event_id(gateway, alpha):
    r = await alpha.post("/v1/projects/alpha/tuningJobs", json={
        "base_model": "baseModels/all-minilm-l6-v2",
        "dataset_version": gateway.stack.versions["classification"], "preset": "PRESET_QUICK"})
    assert r.status_code == 200, r.text
    job = r.json()["name"]
    await gateway.stack.wait_for(job, {2, 3})  # PREPARING/RUNNING: two events at least

    url = f"/v1/{job}:watch"
    async with alpha.stream("GET", url) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        first = await asyncio.wait_for(_read_sse(response, stop_after=2), 30)
    assert [f["id"] for f in first] == ["1", "2"]
    assert all(f["data"]["tuning_job"] == job for f in first)

    assert (await alpha.post(f"/v1/{job}:cancel", json={})).json()["name"] == job

    async with alpha.stream("GET", url, headers={"Last-Event-ID": "2"}) as response:
        rest = await asyncio.wait_for(_read_sse(response), 30)
    assert rest[-1]["event"] == "end"
    events = rest[:-1]
    ids = [int(f["id"]) for f in events]
    assert ids == list(range(3, 3 + len(ids))) and ids  # no gap, no repeat
    states = [f["data"]["state_change"]["state"] for f in events if "state_change" in f["data"]]
    assert states[-1] == "JOB_STATE_CANCELLED"

    # the same through the query parameter; a finished job's stream ends at once
    async with alpha.stream("GET", url, params={"after_sequence_number": ids[-1]}) as response:
        assert [f.get("event") for f in await asyncio.wait_for(_read_sse(response), 30)] == ["end"]


async def test_watch_errors_keep_their_http_status(gateway, alpha):
    r = await alpha.get("/v1/projects/alpha/tuningJobs/missing-job:watch")
    assert r.status_code == 404 and r.json()["error"]["status"] == "NOT_FOUND"
    async with gateway.client("beta") as beta:
        jobs = (await alpha.get("/v1/projects/alpha/tuningJobs")).json()["tuning_jobs"]
        r = await beta.get(f"/v1/{jobs[0]['name']}:watch")
        assert r.status_code == 404


async def _body(total: int, piece: int):
    sent = 0
    block = b"x" * piece
    while sent < total:
        yield block
        sent += piece


async def _consume(messages) -> tuple[int, int, int]:
    """(messages, payload bytes, largest chunk), dropping each message as a sender would."""
    count = size = largest = 0
    async for message in messages:
        count += 1
        size += len(message.chunk)
        largest = max(largest, len(message.chunk))
    return count, size, largest


async def test_upload_stream_memory_is_bounded_by_the_chunk_size():
    """64 MiB through the raw and the multipart paths: the gateway's own buffers stay
    within a few chunks (tracemalloc peak), whatever the body size."""
    chunk, total = 256 * 1024, 64 * 1024 * 1024
    first = dpb.UploadDatasetVersionRequest(header=dpb.UploadHeader(parent="projects/p/datasets/d"))

    def make_chunk(data: bytes):
        return dpb.UploadDatasetVersionRequest(chunk=data)

    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        count, size, largest = await _consume(raw_upload(first, _body(total, 65536), make_chunk, chunk))
        raw_peak = tracemalloc.get_traced_memory()[1]

        async def multipart_body():
            yield b"--B\r\nContent-Disposition: form-data; name=\"header.options.file_name\"\r\n\r\nx.csv\r\n"
            yield b"--B\r\nContent-Disposition: form-data; name=\"file\"; filename=\"x.csv\"\r\n\r\n"
            async for piece in _body(total, 65536):
                yield piece
            yield b"\r\n--B--\r\n"

        firsts = []

        def make_first(fields):
            firsts.append(fields)
            return first

        tracemalloc.reset_peak()
        m_count, m_size, m_largest = await _consume(multipart_upload(
            "multipart/form-data; boundary=B", multipart_body(), make_first, make_chunk, chunk))
        multipart_peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert (size, largest, count) == (total, chunk, 1 + total // chunk)
    assert (m_size, m_largest, m_count) == (total, chunk, 1 + total // chunk)
    assert firsts == [[("header.options.file_name", "x.csv")]]
    for peak in (raw_peak, multipart_peak):
        assert peak < 6 * chunk, f"peak {peak / 2**20:.1f} MiB for a {total / 2**20:.0f} MiB body"
