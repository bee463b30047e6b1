"""Why a job failed, in a category a person can act on.

Exceptions arrive wrapped (Ray's RayTaskError, Ray Train's WorkerGroupError holding
each worker's exception) or only as text (a traceback stored or relayed). `classify`
looks through the whole chain, by class name so no Ray/torch import is needed here,
and then at the text.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass

from services.common.jobs import FailureCategory, JobFailure

C = FailureCategory


class BadDataError(ValueError):
    """A training row the trainer cannot use. `row` is the row number the user knows
    (the canonical split's `source_row`), None when no single row is to blame."""

    def __init__(self, row: int | None, message: str, split: str = "") -> None:
        super().__init__(row, message, split)
        self.row = row
        self.message = message
        self.split = split

    def __reduce__(self):  # keep the fields across Ray's pickling
        return (type(self), (self.row, self.message, self.split))

    def __str__(self) -> str:
        if self.row is None:
            return self.message
        where = f"row {self.row}" + (f" of the {self.split} split" if self.split else "")
        return f"{where}: {self.message}"


@dataclass(frozen=True)
class _Signal:
    """One exception of the chain (or a piece of text), as names and words."""

    types: frozenset[str]
    text: str
    exc: BaseException | None


_BAD_DATA_TYPES = {"BadDataError", "ArrowInvalid", "ArrowTypeError", "UnicodeDecodeError", "TemplateError", "TemplateSyntaxError", "UndefinedError"}  # fmt: skip
_OOM_TYPES = {"OutOfMemoryError", "MemoryError"}
_OOM_TEXT = re.compile(
    r"out of memory|can't allocate memory|cannot allocate memory|memory pressure|\bOOM\b"
    r"|not enough memory",
    re.IGNORECASE,
)
_LICENCE_TYPES = {"GatedRepoError"}
_MODEL_TYPES = {"RepositoryNotFoundError", "EntryNotFoundError", "LocalEntryNotFoundError", "RevisionNotFoundError", "HFValidationError", "SafetensorError"}  # fmt: skip
_MODEL_TEXT = re.compile(
    r"from_pretrained|does not appear to have a file named|not a valid model identifier"
    r"|can't load (the )?(tokenizer|config|model)|\.safetensors|config\.json"
    r"|huggingface\.co|offline mode",
    re.IGNORECASE,
)
_WORKER_TYPES = {"ActorDiedError", "RayActorError", "WorkerCrashedError", "NodeDiedError", "LocalRayletDiedError", "ObjectLostError", "OwnerDiedError", "ObjectFetchTimedOutError", "ObjectReconstructionFailedError", "RaySystemError", "RpcError", "ActorUnavailableError", "OutOfDiskError", "ObjectStoreFullError", "RuntimeEnvSetupError", "TaskUnschedulableError", "ActorUnschedulableError", "TaskPlacementGroupRemoved", "ActorPlacementGroupRemoved", "PreemptionError", "NCCLHangError", "DistBackendError", "DistNetworkError"}  # fmt: skip
_WORKER_TEXT = re.compile(
    r"actor died|worker died|node died|worker crashed|unexpectedly exited|raylet|gloo"
    r"|connection closed by peer|no space left on device",
    re.IGNORECASE,
)
_STORAGE_TYPES = {"EndpointConnectionError", "ConnectTimeoutError", "NewConnectionError", "MaxRetryError", "S3Error", "ConnectionError", "ConnectionRefusedError", "ConnectionResetError", "ConnectionAbortedError", "BrokenPipeError", "TimeoutError", "gaierror"}  # fmt: skip
_STORAGE_TEXT = re.compile(
    r"AWS Error|NETWORK_CONNECTION|curlCode|connection refused|connection reset"
    r"|could not connect|name or service not known|temporary failure in name resolution"
    r"|SlowDown|ServiceUnavailable",
    re.IGNORECASE,
)
_CANCEL_TYPES = {"TaskCancelledError"}
# Wrappers whose own message says little: INTERNAL reports what they wrap.
_WRAPPER_TYPES = {"RayTaskError", "TrainingFailedError", "WorkerGroupError", "ControllerError", "RayTrainError", "UserCodeException"}  # fmt: skip

_ROW = re.compile(r"row (\d+)(?: of the (\w+) split)?: (.+)")
_ERROR_LINE = re.compile(r"^(?:[\w.]+\.)?([A-Z]\w*(?:Error|Exception|Exit))(?::\s*(.*))?$")
_TYPE_NAME = re.compile(r"\b([A-Z]\w*(?:Error|Exception|Exit)|gaierror)\b")


def classify(exc: BaseException | str) -> JobFailure:
    """The failure category, a plain message and a hint for an exception (or its text)."""
    signals = list(_signals(exc))
    for rule in (_bad_data, _oom, _licence, _model_access, _infrastructure, _cancelled):
        failure = rule(signals)
        if failure is not None:
            return failure
    return _internal(signals)


def cancelled_by_user(who: str = "") -> JobFailure:
    by = f" by {who}" if who else ""
    return JobFailure(C.CANCELLED_BY_USER, f"The job was cancelled{by}.", "", "CANCELLED")


def run_lost(detail: str) -> JobFailure:
    """For the reconciler: the Ray run is gone and cannot be resumed."""
    return JobFailure(
        C.INFRASTRUCTURE,
        f"The training run was lost: {detail}",
        "Start the job again; it had no checkpoint to resume from.",
        "UNAVAILABLE",
    )


def _signals(exc: BaseException | str) -> Iterator[_Signal]:
    if isinstance(exc, str):
        yield _Signal(frozenset(_TYPE_NAME.findall(exc)), exc, None)
        return
    seen: set[int] = set()
    queue: list[BaseException] = [exc]
    while queue and len(seen) < 50:
        e = queue.pop(0)
        if id(e) in seen:
            continue
        seen.add(id(e))
        names = {cls.__name__ for cls in type(e).__mro__}
        text = str(e)
        # Ray keeps a remote error's class in its text too (RayTaskError(ValueError)).
        yield _Signal(frozenset(names | set(_TYPE_NAME.findall(text))), text, e)
        failures = getattr(e, "worker_failures", None)
        if isinstance(failures, dict):
            queue.extend(v for v in failures.values() if isinstance(v, BaseException))
        for attr in ("cause", "controller_failure"):
            inner = getattr(e, attr, None)
            if isinstance(inner, BaseException):
                queue.append(inner)
        queue.extend(x for x in (e.__cause__, e.__context__) if x is not None)


def _bad_data(signals: list[_Signal]) -> JobFailure | None:
    hint = "Fix or remove the row, upload a new dataset version, and start the job again."
    for s in signals:
        if isinstance(s.exc, BadDataError) and s.exc.row is not None:
            return JobFailure(C.BAD_DATA, str(s.exc), hint, "INVALID_ARGUMENT")
    for s in signals:
        if "BadDataError" in s.types:
            match = _ROW.search(s.text)
            if match:
                return JobFailure(C.BAD_DATA, _first_line(match.group(0)), hint, "INVALID_ARGUMENT")
    for s in signals:
        if s.types & _BAD_DATA_TYPES:
            message = s.exc.message if isinstance(s.exc, BadDataError) else _describe(s)
            return JobFailure(
                C.BAD_DATA,
                f"The training data could not be used: {message}",
                "Check the dataset version's rows and columns for this task.",
                "INVALID_ARGUMENT",
            )
    return None


def _oom(signals: list[_Signal]) -> JobFailure | None:
    for s in signals:
        if s.types & _OOM_TYPES or _OOM_TEXT.search(s.text):
            return JobFailure(
                C.OUT_OF_MEMORY,
                "A training worker ran out of memory.",
                "Lower per_device_batch_size (raise gradient_accumulation_steps to keep the "
                "effective batch) or max_seq_length, or turn on gradient_checkpointing.",
                "RESOURCE_EXHAUSTED",
            )
    return None


def _licence(signals: list[_Signal]) -> JobFailure | None:
    for s in signals:
        if s.types & _LICENCE_TYPES:
            return JobFailure(
                C.LICENCE,
                f"The base model is gated behind a licence: {_describe(s)}",
                "Accept the model's licence for the account the cluster uses.",
                "FAILED_PRECONDITION",
            )
    return None


def _model_access(signals: list[_Signal]) -> JobFailure | None:
    for s in signals:
        loader_os_error = "OSError" in s.types and _MODEL_TEXT.search(s.text)
        if s.types & _MODEL_TYPES or loader_os_error:
            return JobFailure(
                C.MODEL_ACCESS,
                f"The base model could not be loaded: {_describe(s)}",
                "Check the model folder (config.json, *.safetensors, tokenizer) is readable "
                "on every Ray node.",
                "FAILED_PRECONDITION",
            )
    return None


def _infrastructure(signals: list[_Signal]) -> JobFailure | None:
    # Storage first: a worker that died of an unreachable S3 is a storage problem.
    for s in signals:
        if s.types & _STORAGE_TYPES or _STORAGE_TEXT.search(s.text):
            return JobFailure(
                C.INFRASTRUCTURE,
                f"Object storage was unreachable: {_describe(s)}",
                "Check that the object store is up, then resume the job from its last checkpoint.",
                "UNAVAILABLE",
            )
    for s in signals:
        if s.types & _WORKER_TYPES or _WORKER_TEXT.search(s.text):
            return JobFailure(
                C.INFRASTRUCTURE,
                f"A Ray worker or node was lost: {_describe(s)}",
                "Resume the job; it continues from its last checkpoint.",
                "UNAVAILABLE",
            )
    return None


def _cancelled(signals: list[_Signal]) -> JobFailure | None:
    if any(s.types & _CANCEL_TYPES for s in signals):
        return cancelled_by_user()
    return None


def _internal(signals: list[_Signal]) -> JobFailure:
    # The innermost non-wrapper exception says most about what went wrong.
    inner = [s for s in signals if s.exc is not None and not (s.types & _WRAPPER_TYPES)]
    s = inner[-1] if inner else signals[0]
    return JobFailure(
        C.INTERNAL,
        f"Training stopped on an unexpected error: {_describe(s)}",
        "This is likely a bug in MTW; the job's log events hold the details.",
        "INTERNAL",
    )


def _describe(s: _Signal) -> str:
    """`Type: first line of the message`, short enough for a status line."""
    if s.exc is not None:
        message = _first_line(str(s.exc))
        name = type(s.exc).__name__
        return f"{name}: {message}" if message else name
    # Text (a traceback): its last `module.Type: message` line is the error itself.
    lines = [ln.strip() for ln in s.text.strip().splitlines() if ln.strip()]
    for line in reversed(lines):
        match = _ERROR_LINE.match(line)
        if match:
            return _first_line(match.group(1) + (f": {match.group(2)}" if match.group(2) else ""))
    return _first_line(lines[-1]) if lines else "no details"


def _first_line(text: str, limit: int = 300) -> str:
    line = next((ln.strip() for ln in text.strip().splitlines() if ln.strip()), "")
    return line if len(line) <= limit else line[: limit - 1] + "…"
