"""The upload request stream: header first, bounded chunks, lazy reads, progress."""

from __future__ import annotations

import io
import os

import pytest

from mtw.client.ingest import MAX_CHUNK_SIZE, UploadStream, build_ingest_options
from mtw.errors import ConfigurationError


class CountingReader(io.RawIOBase):
    """A file object that records every read, to prove the stream reads lazily."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.pos = 0
        self.reads: list[int] = []

    def readable(self) -> bool:
        return True

    def read(self, n: int = -1) -> bytes:
        assert n > 0, "the stream must never read the whole file"
        self.reads.append(n)
        take = min(n, self.size - self.pos)
        self.pos += take
        return b"x" * take


def test_header_first_then_chunks(tmp_path):
    data = os.urandom(10_000)
    path = tmp_path / "train.csv"
    path.write_bytes(data)
    opts = build_ingest_options(task="classification")
    msgs = list(UploadStream("projects/p/datasets/d", path, opts, chunk_size=4096))

    assert msgs[0].WhichOneof("part") == "header"
    header = msgs[0].header
    assert header.parent == "projects/p/datasets/d"
    assert header.size_bytes == 10_000
    assert header.options.file_name == "train.csv"
    assert header.options.task == 1
    chunks = [m.chunk for m in msgs[1:]]
    assert all(m.WhichOneof("part") == "chunk" for m in msgs[1:])
    assert [len(c) for c in chunks] == [4096, 4096, 1808]
    assert b"".join(chunks) == data


def test_reads_lazily_one_chunk_per_message():
    reader = CountingReader(5 * 1000)
    stream = iter(
        UploadStream("projects/p/datasets/d", reader, build_ingest_options(), chunk_size=1000)
    )
    next(stream)  # the header reads nothing
    assert reader.reads == []
    next(stream)
    assert reader.reads == [1000]
    next(stream)
    assert reader.reads == [1000, 1000]
    rest = list(stream)
    assert len(rest) == 3
    assert all(n == 1000 for n in reader.reads)


def test_progress_reports_bytes_and_total(tmp_path):
    path = tmp_path / "a.jsonl"
    path.write_bytes(b"y" * 2500)
    seen: list[tuple[int, int | None]] = []
    list(
        UploadStream(
            "projects/p/datasets/d",
            path,
            build_ingest_options(),
            chunk_size=1000,
            progress=lambda sent, total: seen.append((sent, total)),
        )
    )
    assert seen == [(0, 2500), (1000, 2500), (2000, 2500), (2500, 2500)]


def test_file_object_size_and_name_from_current_position():
    buf = io.BytesIO(b"header-to-skip\nrest of file")
    buf.seek(15)
    stream = UploadStream("projects/p/datasets/d", buf, build_ingest_options(file_name="x.txt"))
    msgs = list(stream)
    assert msgs[0].header.size_bytes == len(b"rest of file")
    assert msgs[0].header.options.file_name == "x.txt"
    assert b"".join(m.chunk for m in msgs[1:]) == b"rest of file"


def test_unknown_size_is_left_zero():
    class Pipe(io.RawIOBase):
        def __init__(self):
            self.left = [b"abc", b"def"]

        def readable(self):
            return True

        def seekable(self):
            return False

        def tell(self):
            raise OSError("not seekable")

        def read(self, n=-1):
            return self.left.pop(0) if self.left else b""

    msgs = list(UploadStream("projects/p/datasets/d", Pipe(), build_ingest_options()))
    assert msgs[0].header.size_bytes == 0
    assert b"".join(m.chunk for m in msgs[1:]) == b"abcdef"


def test_empty_file_sends_only_the_header(tmp_path):
    path = tmp_path / "empty.csv"
    path.write_bytes(b"")
    msgs = list(UploadStream("projects/p/datasets/d", path, build_ingest_options()))
    assert len(msgs) == 1 and msgs[0].header.size_bytes == 0


def test_path_is_closed_after_streaming(tmp_path):
    path = tmp_path / "c.csv"
    path.write_bytes(b"a,b\n")
    stream = UploadStream("projects/p/datasets/d", path, build_ingest_options())
    list(stream)
    assert stream.prepare().fileobj.closed


@pytest.mark.parametrize("size", [0, MAX_CHUNK_SIZE + 1])
def test_chunk_size_bounds(size):
    with pytest.raises(ConfigurationError):
        UploadStream(
            "projects/p/datasets/d", io.BytesIO(b""), build_ingest_options(), chunk_size=size
        )


async def test_async_iteration_matches_sync(tmp_path):
    path = tmp_path / "big.csv"
    data = os.urandom(3000)
    path.write_bytes(data)
    msgs = [
        m
        async for m in UploadStream(
            "projects/p/datasets/d", path, build_ingest_options(), chunk_size=1024
        )
    ]
    assert msgs[0].header.size_bytes == 3000
    assert [len(m.chunk) for m in msgs[1:]] == [1024, 1024, 952]
    assert b"".join(m.chunk for m in msgs[1:]) == data


def test_pipe_has_unknown_size_and_no_pseudo_name():
    read_fd, write_fd = os.pipe()
    os.write(write_fd, b"a,b\n1,2\n")
    os.close(write_fd)
    with os.fdopen(read_fd, "rb") as pipe:
        msgs = list(UploadStream("projects/p/datasets/d", pipe, build_ingest_options()))
    assert msgs[0].header.size_bytes == 0
    assert msgs[0].header.options.file_name == ""
    assert b"".join(m.chunk for m in msgs[1:]) == b"a,b\n1,2\n"


def test_pseudo_file_names_are_not_sent():
    buf = io.BytesIO(b"x")
    buf.name = "<stdin>"
    msgs = list(UploadStream("projects/p/datasets/d", buf, build_ingest_options()))
    assert msgs[0].header.options.file_name == ""
