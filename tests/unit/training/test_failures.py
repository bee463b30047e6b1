"""Failure classification: categories a person can act on, never only a traceback."""

from __future__ import annotations

import pickle

import pytest

from services.common.jobs import FailureCategory as C
from services.training_svc.domain.failures import (
    BadDataError,
    cancelled_by_user,
    classify,
    run_lost,
)


# Stand-ins with the class names of Ray's / torch's / huggingface_hub's exceptions, so the
# tests need none of them imported.
class ActorDiedError(Exception):
    pass


class OutOfMemoryError(RuntimeError):
    pass


class GatedRepoError(OSError):
    pass


class WorkerGroupError(Exception):
    def __init__(self, message, worker_failures):
        super().__init__("Training failed due to worker errors:\n" + message)
        self.worker_failures = worker_failures


class RayTaskError(Exception):
    def __init__(self, cause):
        super().__init__(f"ray::train_fn() (pid=1)\n{type(cause).__name__}: {cause}")
        self.cause = cause


def test_bad_data_names_the_row_and_survives_pickling():
    err = pickle.loads(pickle.dumps(BadDataError(17, "label 'x' is not a known label", "train")))
    assert (err.row, err.split) == (17, "train")
    failure = classify(err)
    assert failure.category is C.BAD_DATA
    assert failure.message == "row 17 of the train split: label 'x' is not a known label"
    assert failure.code == "INVALID_ARGUMENT"
    assert "row" in failure.hint


def test_bad_data_inside_ray_wrappers_and_as_text():
    wrapped = WorkerGroupError("rank 0 failed", {0: RayTaskError(BadDataError(3, "empty text"))})
    assert classify(wrapped).message == "row 3: empty text"
    text = (
        'Traceback (most recent call last):\n  File "loop.py", line 9, in tokenize\n'
        "services.training_svc.domain.failures.BadDataError: row 42: messages[1] has no content\n"
    )
    failure = classify(text)
    assert failure.category is C.BAD_DATA
    assert failure.message == "row 42: messages[1] has no content"


def test_bad_data_without_a_row():
    failure = classify(BadDataError(None, "column 'label' is missing"))
    assert failure.category is C.BAD_DATA
    assert failure.message.endswith("column 'label' is missing")


@pytest.mark.parametrize(
    "exc",
    [
        MemoryError(),
        OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"),
        RuntimeError(
            "[enforce fail at alloc_cpu.cpp:117] DefaultCPUAllocator: can't allocate memory"
        ),
        ActorDiedError("The actor died because its worker was killed due to memory pressure (OOM)"),
        "ray.exceptions.OutOfMemoryError: Task was killed due to the node running low on memory.",
    ],
)
def test_out_of_memory_says_what_to_lower(exc):
    failure = classify(exc)
    assert failure.category is C.OUT_OF_MEMORY
    assert "per_device_batch_size" in failure.hint and "max_seq_length" in failure.hint
    assert "gradient_accumulation_steps" in failure.hint
    assert failure.code == "RESOURCE_EXHAUSTED"


def test_oom_inside_a_chain():
    try:
        try:
            raise MemoryError
        except MemoryError as inner:
            raise RuntimeError("step failed") from inner
    except RuntimeError as outer:
        assert classify(outer).category is C.OUT_OF_MEMORY


@pytest.mark.parametrize(
    "exc",
    [
        OSError("/models/x does not appear to have a file named model.safetensors"),
        OSError(
            "Can't load tokenizer for 'gpt-x'. If you were trying to load it from 'https://huggingface.co/models'"
        ),
        "safetensors_rust.SafetensorError: Error while deserializing header: HeaderTooLarge",
    ],
)
def test_model_access(exc):
    failure = classify(exc)
    assert failure.category is C.MODEL_ACCESS
    assert failure.message.startswith("The base model could not be loaded: ")


def test_gated_model_is_a_licence_problem():
    assert classify(GatedRepoError("Access to model x is restricted")).category is C.LICENCE


@pytest.mark.parametrize(
    ("exc", "words"),
    [
        (ActorDiedError("The actor died unexpectedly before finishing this task."), "Ray worker"),
        ("ray.exceptions.NodeDiedError: node 1a2b was lost", "Ray worker"),
        (WorkerGroupError("x", {1: ActorDiedError("worker died")}), "Ray worker"),
        (
            OSError(
                "When reading information for key 'a': AWS Error NETWORK_CONNECTION during HeadObject"
            ),
            "Object storage",
        ),
        (ConnectionRefusedError(111, "Connection refused"), "Object storage"),
    ],
)
def test_infrastructure(exc, words):
    failure = classify(exc)
    assert failure.category is C.INFRASTRUCTURE
    assert words in failure.message
    assert failure.code == "UNAVAILABLE"


def test_anything_else_is_internal_with_type_and_message():
    failure = classify(WorkerGroupError("rank 0", {0: RayTaskError(KeyError("labels"))}))
    assert failure.category is C.INTERNAL
    assert failure.message == "Training stopped on an unexpected error: KeyError: 'labels'"
    text = 'Traceback (most recent call last):\n  File "x.py", line 1\nValueError: bad things\n'
    assert classify(text).message.endswith("ValueError: bad things")
    assert classify(ZeroDivisionError()).message.endswith("ZeroDivisionError")


def test_helpers():
    assert cancelled_by_user("users/ana").message == "The job was cancelled by users/ana."
    lost = run_lost("the Ray actor is gone")
    assert lost.category is C.INFRASTRUCTURE and "the Ray actor is gone" in lost.message
