"""Endpoint/key/project resolution, resource names and IngestOptions building."""

from __future__ import annotations

import pytest

from mtw.client import names
from mtw.client.config import ClientConfig, with_default_port
from mtw.client.ingest import build_ingest_options
from mtw.common.v1 import task_pb2
from mtw.dataset.v1 import dataset_version_pb2 as ver
from mtw.errors import ConfigurationError


def test_missing_key_has_a_clear_message():
    with pytest.raises(ConfigurationError, match="Set MTW_API_KEY or pass api_key=.*make run"):
        ClientConfig.resolve(env={})


def test_defaults_each_service_on_its_port():
    c = ClientConfig.resolve(env={"MTW_API_KEY": "k"})
    assert c.api_key == "k" and c.project == "dev"
    assert c.endpoints == {
        "dataset": "127.0.0.1:50051",
        "training": "127.0.0.1:50052",
        "evaluation": "127.0.0.1:50053",
        "registry": "127.0.0.1:50054",
        "insights": "127.0.0.1:50055",
    }


def test_per_service_env_overrides_mtw_endpoint():
    env = {
        "MTW_API_KEY": "k",
        "MTW_ENDPOINT": "gateway:9000",
        "MTW_DATASET_ENDPOINT": "data:1234",
        "MTW_PROJECT": "acme",
    }
    c = ClientConfig.resolve(env=env)
    assert c.endpoint_for("dataset") == "data:1234"
    assert c.endpoint_for("training") == "gateway:9000"
    assert c.project == "acme"


def test_bare_host_gets_each_default_port():
    c = ClientConfig.resolve(env={"MTW_API_KEY": "k", "MTW_ENDPOINT": "svc.local"})
    assert c.endpoint_for("dataset") == "svc.local:50051"
    assert c.endpoint_for("registry") == "svc.local:50054"


def test_explicit_arguments_win():
    env = {"MTW_API_KEY": "env", "MTW_DATASET_ENDPOINT": "data:1"}
    c = ClientConfig.resolve("here:2", "arg", project="p", env=env)
    assert c.api_key == "arg" and c.project == "p"
    assert c.endpoint_for("dataset") == "here:2"
    m = ClientConfig.resolve({"dataset": "x:3"}, env=env)
    assert m.endpoint_for("dataset") == "x:3"
    assert m.endpoint_for("training") == "127.0.0.1:50052"


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("h", "h:7"),
        ("h:1", "h:1"),
        ("::1", "[::1]:7"),
        ("[::1]", "[::1]:7"),
        ("[::1]:5", "[::1]:5"),
        ("unix:/tmp/s", "unix:/tmp/s"),
    ],
)
def test_with_default_port(given, expected):
    assert with_default_port(given, 7) == expected


@pytest.mark.parametrize(
    "ref",
    [
        "reviews@3",
        "reviews/versions/3",
        "projects/dev/datasets/reviews/versions/3",
        "projects/dev/datasets/reviews@3",
    ],
)
def test_version_references(ref):
    assert names.version_name(ref, "dev") == "projects/dev/datasets/reviews/versions/3"


def test_version_reference_keeps_its_own_project():
    assert (
        names.version_name("projects/x/datasets/d@1", "dev") == "projects/x/datasets/d/versions/1"
    )
    assert names.parse_version("d@latest", "p") == ("projects/p/datasets/d", "latest")


@pytest.mark.parametrize("ref", ["reviews", "a/b/c", "", "reviews@", "@3"])
def test_bad_version_references(ref):
    with pytest.raises(ConfigurationError):
        names.version_name(ref, "dev")


def test_dataset_names_and_objects():
    assert names.dataset_name("d", "p") == "projects/p/datasets/d"
    assert names.dataset_name("projects/q/datasets/d", "p") == "projects/q/datasets/d"

    class WithName:
        name = "projects/q/datasets/e"

    assert names.dataset_name(WithName(), "p") == "projects/q/datasets/e"
    assert names.short_version("projects/p/datasets/d/versions/2") == "d@2"
    with pytest.raises(ConfigurationError):
        names.dataset_name("projects/p/models/m", "p")


def test_ingest_options_from_friendly_values():
    o = build_ingest_options(
        file_name="/home/me/data/train.csv",
        format="csv",
        task="chat-sft",
        column_mapping={"messages": "conv", "text": None},
        split={"validation_fraction": 0.2, "seed": 7, "stratify": False, "test_fraction": None},
        pii_handling="redact",
        tokenizer_model="gpt2",
    )
    assert o.file_name == "train.csv"
    assert o.format == ver.DATA_FORMAT_CSV
    assert o.task == task_pb2.TASK_CHAT_SFT
    assert o.column_mapping.messages == "conv" and o.column_mapping.text == ""
    assert o.split.validation_fraction == pytest.approx(0.2)
    assert o.split.seed == 7
    assert o.split.HasField("stratify") and o.split.stratify is False
    assert not o.split.HasField("test_fraction")
    assert o.pii_handling == ver.PII_HANDLING_REDACT
    assert o.tokenizer_model == "gpt2"


def test_ingest_options_accept_proto_names_and_numbers():
    assert build_ingest_options(format="DATA_FORMAT_TSV").format == ver.DATA_FORMAT_TSV
    assert build_ingest_options(task=3).task == task_pb2.TASK_CHAT_SFT
    assert build_ingest_options(format="auto").format == ver.DATA_FORMAT_UNSPECIFIED
    assert build_ingest_options() == ver.IngestOptions()


@pytest.mark.parametrize(
    "kwargs",
    [
        {"format": "xlsx"},
        {"task": "regression"},
        {"column_mapping": {"txt": "a"}},
        {"split": {"ratio": 1}},
    ],
)
def test_ingest_options_reject_unknown_values(kwargs):
    with pytest.raises(ConfigurationError):
        build_ingest_options(**kwargs)
