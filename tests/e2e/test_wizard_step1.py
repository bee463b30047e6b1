"""Wizard step 1 end to end, as a new user does it, with real processes only.

``python -m devstack`` (what ``make run`` runs) starts on this session's database, with
its own run directory and free ports; the ``mtw`` CLI then creates datasets, uploads
the files in ``../shared/data``, shows their quality reports and a preview, and is
refused a broken file with every problem named by line and field and nothing kept.
Finally devstack must stop cleanly on SIGTERM.
"""

from __future__ import annotations

import csv
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from devstack.components import free_port
from devstack.processes import discover_services

ROOT = Path(__file__).resolve().parents[2]
SHARED = ROOT.parent / "shared" / "data"
BROWN = SHARED / "brown_genres.csv"
CHAT = SHARED / "chatterbot_qa_en.jsonl"
START_TIMEOUT = 90  # seconds until devstack says "MTW is up"
CLI_TIMEOUT = 60  # seconds per mtw command

pytestmark = pytest.mark.skipif(
    not (BROWN.is_file() and CHAT.is_file()),
    reason=f"the shared data files are missing from {SHARED}",
)

# What the user's shell may carry that would point devstack or mtw elsewhere.
_FOREIGN = ("S3_ENDPOINT", "S3_ACCESS_KEY", "S3_SECRET_KEY", "S3_BUCKET", "GRPC_HOST",
            "GRPC_PORT", "DATABASE_URL")


def _clean_environ() -> dict[str, str]:
    return {
        k: v
        for k, v in os.environ.items()
        if k not in _FOREIGN and not k.startswith("MTW_") and not k.endswith("_SVC_PORT")
    }


def _listening(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


class Devstack:
    """``python -m devstack`` as a child process, output in ``log``."""

    def __init__(self, run_dir: Path, database_url: str) -> None:
        self.run_dir = run_dir
        self.log = run_dir / "devstack.log"
        self.env_file = run_dir / "mtw.env"
        self.s3_port = free_port()
        self.service_ports = {s.port_env: free_port() for s in discover_services()}
        env = _clean_environ()
        env.update(
            DATABASE_URL=database_url,
            MTW_RUN_DIR=str(run_dir),
            S3_PORT=str(self.s3_port),
            PYTHONUNBUFFERED="1",
            **{k: str(v) for k, v in self.service_ports.items()},
        )
        with open(self.log, "wb") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "devstack"],
                cwd=ROOT,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,  # our signals only, like a user's Ctrl-C
            )
        self.returncode: int | None = None

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_up(self, timeout: float = START_TIMEOUT) -> None:
        deadline = time.monotonic() + timeout
        while "MTW is up" not in self.output() or not self.env_file.exists():
            if self.proc.poll() is not None:
                pytest.fail(f"devstack exited with {self.proc.returncode}:\n{self.output()[-4000:]}")
            if time.monotonic() > deadline:
                pytest.fail(f"devstack was not up within {timeout:.0f}s:\n{self.output()[-4000:]}")
            time.sleep(0.2)

    def mtw_env(self) -> dict[str, str]:
        """The env file, read as ``export $(cat .run/mtw.env)`` would."""
        values = {}
        for line in self.env_file.read_text().split():
            key, sep, value = line.partition("=")
            assert sep and key.startswith("MTW_"), f"not KEY=VALUE: {line!r}"
            values[key] = value
        return values

    def stop(self) -> int:
        """SIGTERM, then SIGKILL after 30 s; idempotent. Returns the exit code."""
        if self.returncode is None:
            if self.proc.poll() is None:
                self.proc.send_signal(signal.SIGTERM)
                try:
                    self.proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait(timeout=10)
            self.returncode = self.proc.returncode
        return self.returncode


@pytest.fixture(scope="module")
def stack(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Devstack]:
    ds = Devstack(tmp_path_factory.mktemp("devstack-run"), database_url)
    try:
        ds.wait_up()
        yield ds
    finally:
        ds.stop()


class Mtw:
    """Runs the installed ``mtw`` command with the env file's variables."""

    def __init__(self, env: dict[str, str]) -> None:
        exe = Path(sys.executable).with_name("mtw")
        self.argv0 = (
            [str(exe)]
            if exe.exists()
            else [sys.executable, "-c", "import sys; from mtw.cli import main; sys.exit(main())"]
        )
        self.env = {**_clean_environ(), **env, "COLUMNS": "200", "NO_COLOR": "1"}

    def __call__(self, *args: str, code: int = 0) -> subprocess.CompletedProcess[str]:
        r = subprocess.run(
            [*self.argv0, *args],
            check=False,  # the exit code is asserted below
            cwd=ROOT,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=CLI_TIMEOUT,
            stdin=subprocess.DEVNULL,
        )
        assert r.returncode == code, (
            f"mtw {' '.join(args)} exited {r.returncode}, expected {code}\n"
            f"stdout:\n{r.stdout}\nstderr:\n{r.stderr}"
        )
        assert "Traceback" not in r.stdout + r.stderr
        return r

    def json(self, *args: str) -> object:
        return json.loads(self("--json", *args).stdout)


@pytest.fixture(scope="module")
def mtw(stack: Devstack) -> Mtw:
    env = stack.mtw_env()
    assert env["MTW_PROJECT"] == "dev" and env["MTW_API_KEY"]
    port = stack.service_ports["DATASET_SVC_PORT"]
    assert env["MTW_DATASET_ENDPOINT"] == f"127.0.0.1:{port}"
    return Mtw(env)


def _brown_labels() -> Counter[str]:
    with open(BROWN, newline="", encoding="utf-8") as f:
        return Counter(row["label"] for row in csv.DictReader(f))


def _count(value: object) -> int:
    return int(value or 0)  # int64 fields are JSON strings; zero is left out


def _assert_findings_shown(report: dict, text: str) -> None:
    for w in report.get("warnings", []):
        assert w["code"] in text, f"finding {w['code']} is not shown"


def test_brown_upload_shows_the_quality_report(mtw: Mtw):
    labels = _brown_labels()
    assert len(labels) == 15 and sum(labels.values()) == 8368

    r = mtw("datasets", "create", "brown")
    assert "Created dataset projects/dev/datasets/brown" in r.stdout
    up = mtw("datasets", "upload", "brown", str(BROWN), "--group-column", "document")
    assert re.search(r"brown@1 — 8,368 rows \(train [\d,]+ / validation [\d,]+ / test [\d,]+\), "
                     r"task classification, format csv", up.stdout), up.stdout
    assert "Sent 6.2 MB" in up.stderr

    rep = mtw("datasets", "report", "brown@1").stdout
    assert re.search(r"Task\s+classification", rep)
    assert re.search(r"Rows\s+8,368 in 3 source column\(s\)", rep)
    assert re.search(r"document\s+group", rep)  # the group column is named as such
    assert "Label distribution" in rep and "Duplicates and leakage" in rep
    for label, count in labels.items():
        assert re.search(rf"\b{label}\b.*\b{count:,}\b", rep), f"{label} {count:,} not shown"
    for section in ("Label distribution", "Text length (characters)", "Findings"):
        assert section in up.stdout  # the upload prints the same report

    v = mtw.json("datasets", "report", "brown@1")
    assert v["name"] == "projects/dev/datasets/brown/versions/1"
    assert v["task"] == "TASK_SEQUENCE_CLASSIFICATION" and v["format"] == "DATA_FORMAT_CSV"
    assert v["options"]["split"]["groupColumn"] == "document"
    report = v["qualityReport"]
    assert _count(report["rowCount"]) == 8368
    assert sum(_count(s["rowCount"]) for s in v["splits"]) == 8368
    assert {lc["label"]: _count(lc["count"]) for lc in report["labelDistribution"]} == labels
    assert {c["name"]: c.get("mappedTo", "") for c in report["columns"]} == {
        "text": "text", "label": "label", "document": "group"}
    # split by document: no text can be shared between splits
    assert _count(report.get("crossSplitDuplicateRows")) == 0
    _assert_findings_shown(report, rep)

    versions = mtw.json("datasets", "versions", "brown")
    assert [x["name"] for x in versions] == ["projects/dev/datasets/brown/versions/1"]


def test_chat_upload_report_and_preview(mtw: Mtw):
    mtw("datasets", "create", "chat")
    up = mtw("datasets", "upload", "chat", str(CHAT))
    assert re.search(r"chat@1 — 898 rows .*task chat-sft, format jsonl", up.stdout), up.stdout

    rep = mtw("datasets", "report", "chat@1").stdout
    assert re.search(r"Task\s+chat-sft", rep)
    assert re.search(r"Rows\s+898 in 4 source column\(s\)", rep)
    assert re.search(r"messages\s+messages", rep)
    assert "Findings" in rep and "⚠ warning" in rep

    v = mtw.json("datasets", "report", "chat@1")
    assert v["task"] == "TASK_CHAT_SFT" and v["format"] == "DATA_FORMAT_JSONL"
    assert v["columns"] == ["messages"]
    report = v["qualityReport"]
    assert _count(report["rowCount"]) == 898
    splits = {s["name"]: _count(s["rowCount"]) for s in v["splits"]}
    assert sum(splits.values()) == 898 and set(splits) == {"train", "validation", "test"}
    warnings = [w for w in report["warnings"] if w["severity"] == "SEVERITY_WARNING"]
    assert warnings, report["warnings"]
    _assert_findings_shown(report, rep)

    pre = mtw("datasets", "preview", "chat@1", "--rows", "3").stdout
    assert "user: " in pre and "assistant: " in pre
    assert f"3 of {splits['train']:,} rows in train · next page: --page-token" in pre
    page = mtw.json("datasets", "preview", "chat@1", "--rows", "3")
    assert len(page["rows"]) == 3 and _count(page["totalRows"]) == splits["train"]
    for row in page["rows"]:
        roles = [m["role"] for m in row["messages"]]
        assert "user" in roles and "assistant" in roles
        assert f"user: {row['messages'][0]['content'][:40]}" in pre


def test_broken_file_is_refused_with_every_problem_and_nothing_kept(mtw: Mtw, tmp_path: Path):
    bad = tmp_path / "broken.csv"
    bad.write_text(
        "text,label\n"
        "the first row is fine,sports\n"
        "this row,has,one column too many\n"  # line 3
        "another good row,politics\n"
        "a row without its label,\n"  # line 5
        "more sports talk,sports\n"
        "more politics talk,politics\n"
        "yet more sports,sports\n"
        "yet more politics,politics\n"
    )
    mtw("datasets", "create", "broken")
    r = mtw("datasets", "upload", "broken", str(bad), code=1)
    err = r.stderr
    assert "Invalid argument" in err
    assert "line 3: expected 2 columns, found 3" in err
    assert "line 5, field 'label': the field is empty" in err
    assert "2 problems in total" in err
    assert "line 5, field 'label': line 5" not in err  # each location named once
    assert r.stdout == ""

    assert mtw.json("datasets", "versions", "broken") == []
    shown = mtw.json("datasets", "show", "broken")
    assert shown["versions"] == [] and _count(shown["dataset"].get("versionCount")) == 0


def test_devstack_stops_cleanly(stack: Devstack, mtw: Mtw):
    assert stack.stop() == 0, stack.output()[-4000:]
    out = stack.output()
    assert "[devstack] stopped" in out
    assert "Traceback" not in out, out[-4000:]
    for port in (stack.s3_port, *stack.service_ports.values()):
        assert not _listening(port), f"port {port} still answers after devstack stopped"
