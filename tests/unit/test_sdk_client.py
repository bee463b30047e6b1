"""The SDK against the in-memory fake DatasetService (real gRPC on 127.0.0.1:0)."""

from __future__ import annotations

import grpc
import pytest

import mtw
from mtw import errors
from mtw.client.config import ClientConfig
from mtw.client.testing import FakeDatasetService, serve_fake

CSV = "text,label\n" + "".join(f"row {i},{'pos' if i % 3 else 'neg'}\n" for i in range(25))


@pytest.fixture
def fake():
    with serve_fake(FakeDatasetService(api_key="secret")) as f:
        yield f


def make_client(fake, key="secret", retries=3):
    config = ClientConfig.resolve(
        fake.endpoint, key, project="dev", retries=retries, backoff=0.001, timeout=5, env={}
    )
    return mtw.Client(config=config)


@pytest.fixture
def client(fake):
    with make_client(fake) as c:
        yield c


def test_every_call_carries_the_bearer_key(fake, client):
    client.datasets.create("reviews")
    client.datasets.get("reviews")
    assert [md["authorization"] for _, md in fake.calls] == ["Bearer secret"] * 2


def test_wrong_key_is_unauthenticated(fake):
    with make_client(fake, key="nope") as c, pytest.raises(errors.Unauthenticated):
        c.datasets.get("reviews")


def test_create_get_update_delete(fake, client):
    d = client.datasets.create("reviews", display_name="Reviews", labels={"team": "nlp"})
    assert d.name == "projects/dev/datasets/reviews"
    assert client.datasets.get("projects/dev/datasets/reviews").display_name == "Reviews"
    u = client.datasets.update("reviews", description="movie reviews")
    assert u.description == "movie reviews" and u.display_name == "Reviews"
    req_mask = fake.calls[-1]
    assert req_mask[0] == "UpdateDataset"
    with pytest.raises(errors.AlreadyExists):
        client.datasets.create("reviews")
    client.datasets.delete("reviews")
    with pytest.raises(errors.NotFound) as e:
        client.datasets.get("reviews")
    assert e.value.reason == "DATASET_NOT_FOUND"


def test_update_needs_a_field(client):
    with pytest.raises(errors.ConfigurationError):
        client.datasets.update("reviews")


def test_list_is_lazy_and_pages(fake, client):
    for i in range(7):
        client.datasets.create(f"d{i}")
    before = len(fake.calls)
    it = client.datasets.list(page_size=3)
    assert len(fake.calls) == before  # nothing fetched until iterated
    first = next(it)
    assert first.name == "projects/dev/datasets/d0"
    assert len(fake.calls) == before + 1
    rest = list(it)
    assert len(rest) == 6
    assert len(fake.calls) == before + 3
    assert len(list(client.datasets.list(page_size=2, limit=3))) == 3


def test_retries_idempotent_calls_on_unavailable(fake, client):
    client.datasets.create("reviews")
    fake.fail_next("GetDataset", grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.UNAVAILABLE)
    assert client.datasets.get("reviews").name.endswith("/reviews")
    assert [m for m, _ in fake.calls].count("GetDataset") == 3


def test_gives_up_after_retries(fake):
    with make_client(fake, retries=1) as c:
        fake.fail_next("GetDataset", *[grpc.StatusCode.UNAVAILABLE] * 3)
        with pytest.raises(errors.Unavailable):
            c.datasets.get("reviews")
    assert [m for m, _ in fake.calls].count("GetDataset") == 2


def test_never_retries_uploads_or_creates(fake, client, tmp_path):
    client.datasets.create("reviews")
    path = tmp_path / "r.csv"
    path.write_text(CSV)
    fake.fail_next("UploadDatasetVersion", grpc.StatusCode.UNAVAILABLE)
    with pytest.raises(errors.Unavailable):
        client.datasets.upload("reviews", path)
    fake.fail_next("CreateDataset", grpc.StatusCode.UNAVAILABLE)
    with pytest.raises(errors.Unavailable):
        client.datasets.create("other")
    methods = [m for m, _ in fake.calls]
    assert methods.count("UploadDatasetVersion") == 1 and methods.count("CreateDataset") == 2


def test_upload_streams_chunks_and_returns_the_version(fake, client, tmp_path):
    client.datasets.create("reviews")
    path = tmp_path / "reviews.csv"
    path.write_text(CSV)
    seen = []
    v = client.datasets.upload(
        "reviews",
        path,
        task="classification",
        column_mapping={"text": "text", "label": "label"},
        split={"validation_fraction": 0.2},
        chunk_size=64,
        progress=lambda sent, total: seen.append((sent, total)),
    )
    assert v.name == "projects/dev/datasets/reviews/versions/1"
    assert v.quality_report.row_count == 25
    upload = fake.uploads[-1]
    assert upload["header"].size_bytes == len(CSV)
    assert upload["header"].options.file_name == "reviews.csv"
    assert upload["header"].options.column_mapping.label == "label"
    assert max(upload["chunk_sizes"]) <= 64 and sum(upload["chunk_sizes"]) == len(CSV)
    assert seen[-1] == (len(CSV), len(CSV))


def test_upload_errors_carry_violations(client, tmp_path):
    client.datasets.create("reviews")
    path = tmp_path / "bad.csv"
    path.write_text("text,label\nok,1\nBAD,\nfine,2\nBAD,\n")
    with pytest.raises(errors.InvalidArgument) as e:
        client.datasets.upload("reviews", path)
    assert e.value.violations == [
        ("line:3:label", "label is empty"),
        ("line:5:label", "label is empty"),
    ]
    assert e.value.total_errors == 2


def test_upload_of_missing_file_raises_oserror(client, tmp_path):
    with pytest.raises(FileNotFoundError):
        client.datasets.upload("reviews", tmp_path / "nope.csv")


def test_versions_preview_rows_and_latest(fake, client, tmp_path):
    client.datasets.create("reviews")
    path = tmp_path / "r.csv"
    path.write_text(CSV)
    client.datasets.upload("reviews", path)
    v2 = client.datasets.upload("reviews", path)
    assert [v.name[-1] for v in client.datasets.versions("reviews")] == ["2", "1"]
    assert client.datasets.get_version("reviews@latest").name == v2.name
    page = client.datasets.preview("reviews/versions/1", page_size=10)
    assert page.columns == ["text", "label", "source_row"]
    assert page.rows[0] == {"text": "row 0", "label": "neg", "source_row": 1}
    assert page.total_rows == 25 and page.next_page_token
    rows = list(client.datasets.iter_rows("reviews@1", page_size=10))
    assert [r["source_row"] for r in rows] == list(range(1, 26))
    client.datasets.delete_version("reviews@1")
    with pytest.raises(errors.NotFound):
        client.datasets.get_version("reviews@1")
    with pytest.raises(errors.FailedPrecondition):
        client.datasets.delete("reviews")
    client.datasets.delete("reviews", force=True)


async def test_async_client(fake, tmp_path):
    path = tmp_path / "r.csv"
    path.write_text(CSV)
    config = ClientConfig.resolve(fake.endpoint, "secret", backoff=0.001, env={})
    async with mtw.AsyncClient(config=config) as c:
        await c.datasets.create("reviews")
        fake.fail_next("GetDataset", grpc.StatusCode.UNAVAILABLE)
        assert (await c.datasets.get("reviews")).name == "projects/dev/datasets/reviews"
        v = await c.datasets.upload("reviews", path, chunk_size=100)
        assert v.quality_report.row_count == 25
        assert sum(fake.uploads[-1]["chunk_sizes"]) == len(CSV)
        names = [d.name async for d in c.datasets.list(page_size=1)]
        assert names == ["projects/dev/datasets/reviews"]
        rows = [r async for r in c.datasets.iter_rows("reviews@latest", page_size=7)]
        assert len(rows) == 25
        with pytest.raises(errors.NotFound):
            await c.datasets.get("missing")
    assert all(md["authorization"] == "Bearer secret" for _, md in fake.calls)


def test_client_reads_env(monkeypatch):
    monkeypatch.setenv("MTW_API_KEY", "k")
    monkeypatch.setenv("MTW_DATASET_ENDPOINT", "h:1")
    monkeypatch.setenv("MTW_PROJECT", "acme")
    c = mtw.Client()
    assert c.project == "acme" and c.config.endpoint_for("dataset") == "h:1"
    monkeypatch.delenv("MTW_API_KEY")
    with pytest.raises(errors.ConfigurationError, match="MTW_API_KEY"):
        mtw.Client()
