"""The ``mtw`` CLI: parsing, flag → IngestOptions mapping, output and error handling."""

from __future__ import annotations

import importlib
import json

import pytest
import typer
from typer.testing import CliRunner

from mtw.cli import app, main
from mtw.cli.datasets import ingest_options_from_flags, parse_labels, version_ref
from mtw.cli.render import bar, field_label, human_bytes, violation_text
from mtw.client.testing import FakeDatasetService, serve_fake
from mtw.common.v1 import task_pb2
from mtw.dataset.v1 import dataset_version_pb2 as ver

CSV = "text,label\n" + "".join(f"row {i},{'pos' if i % 3 else 'neg'}\n" for i in range(25))
ENV = {"COLUMNS": "200", "MTW_API_KEY": "", "MTW_PROJECT": ""}


@pytest.fixture
def fake():
    with serve_fake(FakeDatasetService(api_key="k")) as f:
        yield f


@pytest.fixture
def run(fake):
    runner = CliRunner()

    def invoke(*args: str, input: str | None = None):
        return runner.invoke(
            app, ["--endpoint", fake.endpoint, "--api-key", "k", *args], env=ENV, input=input
        )

    return invoke


# -- parsing ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "argv",
    [
        ["--help"],
        ["datasets", "--help"],
        ["datasets", "upload", "--help"],
        ["datasets", "preview", "--help"],
        ["datasets", "report", "--help"],
        ["datasets", "delete", "--help"],
    ],
)
def test_help(argv):
    result = CliRunner().invoke(app, argv, env=ENV)
    assert result.exit_code == 0, result.output
    assert "Usage" in result.output


def test_upload_help_lists_every_flag():
    out = CliRunner().invoke(app, ["datasets", "upload", "--help"], env=ENV).output
    for flag in (
        "--format", "--task", "--text-column", "--label-column", "--messages-column",
        "--prompt-column", "--input-column", "--response-column", "--validation-fraction",
        "--test-fraction", "--seed", "--split-column", "--group-column", "--no-stratify",
        "--redact-pii", "--tokenizer", "--create",
    ):  # fmt: skip
        assert flag in out


def test_main_returns_exit_codes(capsys):
    assert main(["--version"]) == 0
    assert "mtw 0.1.0" in capsys.readouterr().out
    assert main(["datasets", "upload"]) == 2  # missing arguments: usage error
    assert main(["datasets", "upload", "d", "f", "--format", "xlsx"]) == 2


def test_missing_api_key_is_a_clear_error():
    result = CliRunner().invoke(app, ["datasets", "list"], env=ENV)
    assert result.exit_code == 1
    assert "Set MTW_API_KEY or pass --api-key" in result.output
    assert "Traceback" not in result.output


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("reviews@3", "reviews@3"),
        ("reviews/versions/3", "reviews/versions/3"),
        ("projects/p/datasets/reviews/versions/3", "projects/p/datasets/reviews/versions/3"),
        ("reviews", "reviews@latest"),
        ("projects/p/datasets/reviews", "projects/p/datasets/reviews@latest"),
    ],
)
def test_version_ref(value, expected):
    assert version_ref(value, allow_latest=True) == expected


def test_version_ref_requires_a_version_to_delete():
    with pytest.raises(typer.BadParameter):
        version_ref("reviews", allow_latest=False)


def test_labels():
    assert parse_labels(["a=1", "b = two", "c="]) == {"a": "1", "b": "two", "c": ""}
    with pytest.raises(typer.BadParameter):
        parse_labels(["novalue"])


def test_flags_to_ingest_options():
    o = ingest_options_from_flags(
        file_name="chats.jsonl",
        format="jsonl",
        task="chat-sft",
        messages_column="conversation",
        prompt_column="instruction",
        input_column="context",
        response_column="answer",
        validation_fraction=0.05,
        test_fraction=0.0,
        seed=1,
        group_column="doc_id",
        stratify=False,
        redact_pii=True,
        tokenizer="gpt2",
    )
    assert o == ver.IngestOptions(
        file_name="chats.jsonl",
        format=ver.DATA_FORMAT_JSONL,
        task=task_pb2.TASK_CHAT_SFT,
        column_mapping=ver.ColumnMapping(
            messages="conversation", prompt="instruction", input="context", response="answer"
        ),
        split=ver.SplitSettings(
            validation_fraction=0.05,
            test_fraction=0.0,
            seed=1,
            group_column="doc_id",
            stratify=False,
        ),
        pii_handling=ver.PII_HANDLING_REDACT,
        tokenizer_model="gpt2",
    )
    assert o.split.HasField("test_fraction")  # an explicit 0 is sent, not dropped


def test_no_flags_leave_everything_to_the_service():
    o = ingest_options_from_flags()
    assert o == ver.IngestOptions()
    assert not o.HasField("split") and not o.HasField("column_mapping")


def test_render_helpers():
    assert field_label("line:12:label") == "line 12, field 'label'"
    assert field_label("line:7") == "line 7"
    assert field_label("dataset.display_name") == "field 'dataset.display_name'"
    assert field_label("file:label") == "field 'label'" and field_label("file") == "file"
    # the dataset service repeats the location in the description: shown once
    assert violation_text("line:5:label", "line 5, field 'label': the field is empty") == (
        "line 5, field 'label': the field is empty"
    )
    assert violation_text("line:5:label", "empty") == "line 5, field 'label': empty"
    assert human_bytes(1_500_000) == "1.5 MB" and human_bytes(12) == "12 B"
    assert bar(10, 10, 4) == "████" and bar(0, 10) == "" and bar(1, 16, 2) == "▏" and bar(8, 16, 2) == "█"


# -- commands against the fake service -------------------------------------------------


def test_create_list_show(run):
    r = run("datasets", "create", "reviews", "--display-name", "Reviews", "--label", "team=nlp")
    assert r.exit_code == 0, r.output
    assert "projects/dev/datasets/reviews" in r.stdout
    r = run("datasets", "list")
    assert r.exit_code == 0 and "reviews" in r.stdout and "team=nlp" in r.stdout
    r = run("--json", "datasets", "list")
    assert json.loads(r.stdout)[0]["labels"] == {"team": "nlp"}
    r = run("--json", "datasets", "show", "reviews")
    assert json.loads(r.stdout) == {
        "dataset": json.loads(run("--json", "datasets", "list").stdout)[0],
        "versions": [],
    }


def test_upload_with_create_prints_summary_and_report(run, fake, tmp_path):
    path = tmp_path / "reviews.csv"
    path.write_text(CSV)
    r = run(
        "datasets", "upload", "reviews", str(path), "--create", "--task", "classification",
        "--text-column", "text", "--label-column", "label", "--validation-fraction", "0.2",
        "--no-stratify", "--redact-pii", "--tokenizer", "gpt2",
    )  # fmt: skip
    assert r.exit_code == 0, r.output
    assert "reviews@1" in r.stdout and "25 rows" in r.stdout
    assert "Label distribution" in r.stdout and "FEW_ROWS" in r.stdout
    header = fake.uploads[-1]["header"]
    assert header.parent == "projects/dev/datasets/reviews"
    assert header.options.file_name == "reviews.csv"
    assert header.options.task == task_pb2.TASK_SEQUENCE_CLASSIFICATION
    assert header.options.column_mapping.label == "label"
    assert header.options.split.stratify is False and header.options.split.HasField("stratify")
    assert header.options.pii_handling == ver.PII_HANDLING_REDACT
    assert header.options.tokenizer_model == "gpt2"
    assert header.size_bytes == len(CSV)


def test_upload_json_output(run, tmp_path):
    run("datasets", "create", "reviews")
    path = tmp_path / "r.csv"
    path.write_text(CSV)
    r = run("--json", "datasets", "upload", "reviews", str(path))
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["name"] == "projects/dev/datasets/reviews/versions/1"


def test_invalid_file_lists_violations_and_exits_1(run, tmp_path):
    run("datasets", "create", "reviews")
    path = tmp_path / "bad.csv"
    path.write_text("text,label\nok,1\nBAD,\nBAD,\n")
    r = run("datasets", "upload", "reviews", str(path))
    assert r.exit_code == 1
    assert "Invalid argument" in r.stderr
    assert "line 3, field 'label': label is empty" in r.stderr
    assert "line 4, field 'label': label is empty" in r.stderr
    assert "2 problems in total" in r.stderr
    assert "Traceback" not in r.output


def test_not_found_and_missing_file(run, tmp_path):
    r = run("datasets", "show", "nope")
    assert r.exit_code == 1 and "Not found" in r.stderr
    r = run("datasets", "upload", "reviews", str(tmp_path / "missing.csv"))
    assert r.exit_code == 1 and "no such file" in r.stderr


def test_bad_version_name_is_a_usage_error(run):
    r = run("datasets", "delete-version", "reviews")
    assert r.exit_code == 2


def test_preview_report_versions_and_deletes(run, tmp_path):
    path = tmp_path / "r.csv"
    path.write_text(CSV)
    assert run("datasets", "upload", "reviews", str(path), "--create").exit_code == 0
    r = run("datasets", "preview", "reviews@1", "--rows", "5")
    assert r.exit_code == 0, r.output
    assert "row 0" in r.stdout and "next page: --page-token 5" in r.stdout
    r = run("--json", "datasets", "preview", "reviews", "--rows", "5", "--page-token", "20")
    page = json.loads(r.stdout)
    assert [row["source_row"] for row in page["rows"]] == [21, 22, 23, 24, 25]
    assert page["nextPageToken"] == ""
    r = run("datasets", "report", "projects/dev/datasets/reviews/versions/1")
    assert r.exit_code == 0 and "Duplicates and leakage" in r.stdout
    assert "reviews@1" in run("datasets", "versions", "reviews").stdout
    r = run("datasets", "delete", "reviews", "--yes")
    assert r.exit_code == 1 and "Failed precondition" in r.stderr
    assert run("datasets", "delete-version", "reviews/versions/1").exit_code == 0
    assert run("datasets", "delete", "reviews", "--force", "--yes").exit_code == 0
    assert run("datasets", "show", "reviews").exit_code == 1


def test_json_flag_after_the_command_is_global(monkeypatch):
    cli_app = importlib.import_module("mtw.cli.app")  # the module, not the typer app
    seen = {}

    def fake_app(args, prog_name):
        seen["args"] = args

    monkeypatch.setattr(cli_app, "app", fake_app)
    assert cli_app.main(["datasets", "versions", "brown", "--json"]) == 0
    assert seen["args"] == ["--json", "datasets", "versions", "brown"]
