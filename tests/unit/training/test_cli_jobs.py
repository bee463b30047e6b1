"""`mtw jobs` flag parsing, the SDK's hyperparameter builder and the service's event filter."""

from __future__ import annotations

import pytest

from mtw.cli.jobs import parse_settings
from mtw.client.jobs import base_model_name, hyperparameters, job_name
from services.common.errors import InvalidArgument
from services.training_svc.app import _event_filter


def test_settings_flags_become_typed_hyperparameters():
    values = parse_settings(["epochs=3", "learning_rate=2e-4", "use_gpu=false", "lora.rank=16",
                             "lora.target_modules=query,value", "lr_scheduler=cosine"])
    h = hyperparameters(values)
    assert h.epochs == 3 and h.learning_rate == pytest.approx(2e-4) and h.HasField("use_gpu") and not h.use_gpu
    assert h.lora.rank == 16 and list(h.lora.target_modules) == ["query", "value"]
    assert h.lr_scheduler == 2  # LEARNING_RATE_SCHEDULER_COSINE
    assert not h.HasField("max_steps")


def test_names():
    assert job_name("j1", "p") == "projects/p/tuningJobs/j1"
    assert job_name("projects/q/tuningJobs/j", "p") == "projects/q/tuningJobs/j"
    assert base_model_name("tiny-gpt2") == "baseModels/tiny-gpt2"


def test_event_filter():
    assert _event_filter("") == ((), 0)
    assert _event_filter("event:step_metrics AND sequence_number>10") == (("step",), 10)
    assert _event_filter("(event:eval_metrics OR event:checkpoint_saved)") == (("eval", "checkpoint"), 0)
    with pytest.raises(InvalidArgument):
        _event_filter("event:nope")
    with pytest.raises(InvalidArgument):
        _event_filter("state=RUNNING")
