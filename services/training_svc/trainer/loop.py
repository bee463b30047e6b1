"""The per-worker training loop that Ray Train runs (``train_loop_per_worker``).

One Hugging Face ``Trainer`` per worker; Ray has already joined the workers in a torch
process group (gloo on CPU), so the Trainer runs DDP across them. Each worker reads
and tokenises only its shard of the training split. Checkpoints go to Ray (and so to
object storage) from a Trainer callback; rank 0 emits the events and writes the final
Hugging Face folder.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
import time
from dataclasses import is_dataclass
from enum import Enum
from pathlib import Path
from typing import Any

from services.common.telemetry import flush_spans, worker_span
from services.common.worker_storage import (
    S3Access,
    download_dir,
    fs_path,
    rmtree_quiet,
    upload_dir,
)
from services.training_svc.domain.model import (
    Hyperparameters,
    LrScheduler,
    Metrics,
    Output,
    Precision,
    Task,
    TrainingSpec,
    TuningMethod,
)
from services.training_svc.trainer import data as tdata
from services.training_svc.trainer.events import EventSink, NullSink

_SCHEDULERS = {
    LrScheduler.UNSPECIFIED: "linear",
    LrScheduler.LINEAR: "linear",
    LrScheduler.COSINE: "cosine",
    LrScheduler.COSINE_WITH_RESTARTS: "cosine_with_restarts",
    LrScheduler.POLYNOMIAL: "polynomial",
    LrScheduler.CONSTANT: "constant",
    LrScheduler.CONSTANT_WITH_WARMUP: "constant_with_warmup",
    LrScheduler.INVERSE_SQRT: "inverse_sqrt",
}
CHECKPOINT_PREFIX = "checkpoint-"


def jsonable(value: Any) -> Any:
    """Dataclasses/enums/tuples → plain JSON values (enums by name)."""
    if isinstance(value, Enum):
        return value.name
    if is_dataclass(value) and not isinstance(value, type):
        return {f: jsonable(getattr(value, f)) for f in value.__dataclass_fields__}
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    return value


# --------------------------------------------------------------------------- model


def load_tokenizer(source: str):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(source, trust_remote_code=False)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token or tok.unk_token
    return tok


def load_model(spec: TrainingSpec, tokenizer, source: str | None = None):
    """The base (or continued-from) model for the task, LoRA applied when asked."""
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification

    source = source or spec.base_model_source
    common = dict(trust_remote_code=False, use_safetensors=True)  # noqa: C408
    if spec.task is Task.SEQUENCE_CLASSIFICATION:
        labels = list(spec.label_names)
        model = AutoModelForSequenceClassification.from_pretrained(
            source,
            num_labels=len(labels),
            id2label=dict(enumerate(labels)),
            label2id={n: i for i, n in enumerate(labels)},
            ignore_mismatched_sizes=True,
            **common,
        )
    else:
        model = AutoModelForCausalLM.from_pretrained(source, **common)
    if model.config.pad_token_id is None:
        model.config.pad_token_id = tokenizer.pad_token_id
    return model


def apply_method(model, spec: TrainingSpec, init_dir: Path | None):
    """LoRA adapters (fresh, or the continued-from adapter) or full fine-tuning."""
    from peft import LoraConfig, PeftModel, TaskType

    hp = spec.hyperparameters
    is_adapter = init_dir is not None and (init_dir / "adapter_config.json").exists()
    if spec.method is TuningMethod.LORA:
        if is_adapter:
            return PeftModel.from_pretrained(model, str(init_dir), is_trainable=True)
        from peft import get_peft_model

        task_type = (
            TaskType.SEQ_CLS if spec.task is Task.SEQUENCE_CLASSIFICATION else TaskType.CAUSAL_LM
        )
        config = LoraConfig(
            task_type=task_type,
            r=hp.lora.rank,
            lora_alpha=hp.lora.alpha,
            lora_dropout=hp.lora.dropout,
            target_modules=list(hp.lora.target_modules),
            fan_in_fan_out=spec.lora_fan_in_fan_out,
        )
        return get_peft_model(model, config)
    if is_adapter:  # full fine-tune on top of an adapter: fold it in first
        return PeftModel.from_pretrained(model, str(init_dir)).merge_and_unload()
    return model


def trainable_parameters(model) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


# --------------------------------------------------------------------------- data order


class EpochBatchSampler:
    """Shuffled batches of one shard, seeded by (seed, epoch): the order is the same
    after a restart, so resuming mid-epoch skips exactly the batches already seen."""

    def __init__(self, n: int, batch_size: int, seed: int) -> None:
        self.n, self.batch_size, self.seed, self.epoch = n, batch_size, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __iter__(self):
        import torch

        g = torch.Generator()
        g.manual_seed(self.seed * 1000 + self.epoch)
        order = torch.randperm(self.n, generator=g).tolist()
        for i in range(0, self.n, self.batch_size):
            yield order[i : i + self.batch_size]

    def __len__(self) -> int:
        return math.ceil(self.n / self.batch_size)


def _shard_loader_class():
    from torch.utils.data import DataLoader

    class ShardLoader(DataLoader):
        def set_epoch(self, epoch: int) -> None:
            self.batch_sampler.set_epoch(epoch)

    return ShardLoader


# --------------------------------------------------------------------------- callbacks


def _callbacks(ctx: dict[str, Any]):
    from transformers import TrainerCallback

    class RayReport(TrainerCallback):
        """Every worker reports its checkpoint folder to Ray (merged into one folder in
        storage); rank 0 emits the checkpoint event with its S3 URI."""

        def on_save(self, args, state, control, **kwargs):
            import ray.train

            local = Path(args.output_dir) / f"{CHECKPOINT_PREFIX}{state.global_step}"
            name = f"{CHECKPOINT_PREFIX}{state.global_step:07d}"
            metrics = {"step": state.global_step, "epoch": state.epoch or 0.0}
            evals = [h for h in state.log_history if "eval_loss" in h]
            if evals:
                metrics["eval_loss"] = evals[-1]["eval_loss"]
            checkpoint = ray.train.Checkpoint.from_directory(str(local)) if local.is_dir() else None
            ray.train.report(metrics, checkpoint=checkpoint, checkpoint_dir_name=name)
            ctx["last_checkpoint"] = f"s3://{ctx['checkpoint_root']}/{name}"
            if ctx["rank"] == 0:
                ctx["sink"].emit(
                    "checkpoint",
                    {
                        "step": state.global_step,
                        "epoch": state.epoch or 0.0,
                        "uri": ctx["last_checkpoint"],
                        "eval_loss": metrics.get("eval_loss"),
                    },
                )

    class Progress(TrainerCallback):
        """Step/eval events from rank 0, with throughput and ETA from measured step time."""

        def __init__(self) -> None:
            self.step_time = 0.0  # seconds inside optimizer steps (excludes eval/save)
            self.steps_timed = 0
            self.t_step = 0.0
            self.last_loss: float | None = None
            self.last_lr: float | None = None
            self.started = False

        def on_step_begin(self, args, state, control, **kwargs):
            self.t_step = time.perf_counter()
            if not self.started:
                self.started = True
                if ctx["rank"] == 0:
                    ctx["sink"].emit(
                        "state",
                        {
                            "state": "RUNNING",
                            "message": f"training on {ctx['world']} worker(s) from step "
                            f"{state.global_step} of {state.max_steps}",
                            "total_steps": state.max_steps,
                        },
                    )

        def on_step_end(self, args, state, control, **kwargs):
            dt = time.perf_counter() - self.t_step
            ctx["first_step_done"] = ctx.get("first_step_done") or time.time()
            # The first step pays for warm-up (allocations, DDP buckets): keep it out of the rate.
            if ctx.get("timed_first") or state.max_steps == 1:
                self.step_time += dt
                self.steps_timed += 1
            ctx["timed_first"] = True

        def samples_per_second(self) -> float | None:
            if not self.steps_timed or self.step_time <= 0:
                return None
            return self.steps_timed * ctx["global_batch"] / self.step_time

        def eta(self, state) -> float | None:
            if not self.steps_timed:
                return None
            return max(0, state.max_steps - state.global_step) * self.step_time / self.steps_timed

        def on_log(self, args, state, control, logs=None, **kwargs):
            logs = logs or {}
            if "loss" not in logs or ctx["rank"] != 0:
                return
            self.last_loss = float(logs["loss"])
            self.last_lr = float(logs.get("learning_rate", 0.0))
            ctx["sink"].emit(
                "step",
                {
                    "step": state.global_step,
                    "epoch": float(state.epoch or 0.0),
                    "loss": self.last_loss,
                    "learning_rate": self.last_lr,
                    "samples_per_second": self.samples_per_second(),
                    "eta_seconds": self.eta(state),
                    "total_steps": state.max_steps,
                },
            )

        def on_evaluate(self, args, state, control, metrics=None, **kwargs):
            metrics = dict(metrics or {})
            loss = metrics.get("eval_loss")
            extra = {
                k.removeprefix("eval_"): float(v)
                for k, v in metrics.items()
                if k.startswith("eval_")
                and k not in ("eval_loss",)
                and isinstance(v, (int, float))
                and not k.endswith(("_runtime", "_per_second"))
            }
            if loss is not None and ctx["task"] is not Task.SEQUENCE_CLASSIFICATION:
                extra["perplexity"] = float(math.exp(min(loss, 50)))
            ctx["evals"].append({"step": state.global_step, "eval_loss": loss, "metrics": extra})
            if ctx["rank"] == 0:
                ctx["sink"].emit(
                    "eval",
                    {
                        "step": state.global_step,
                        "epoch": float(state.epoch or 0.0),
                        "eval_loss": loss,
                        "metrics": extra,
                    },
                )

    class EarlyStop(TrainerCallback):
        """Stop when eval loss hasn't improved by `threshold` for `patience` evaluations
        (every rank sees the same gathered eval loss, so all stop together)."""

        def __init__(self, patience: int, threshold: float) -> None:
            self.patience, self.threshold = patience, threshold
            self.best: float | None = None
            self.bad = 0

        def on_evaluate(self, args, state, control, metrics=None, **kwargs):
            loss = (metrics or {}).get("eval_loss")
            if loss is None:
                return
            if self.best is None or loss < self.best - self.threshold:
                self.best, self.bad = loss, 0
            else:
                self.bad += 1
                if self.bad >= self.patience:
                    control.should_training_stop = True
                    ctx["stopped_early"] = state.global_step
                    if ctx["rank"] == 0:
                        ctx["sink"].emit(
                            "log",
                            {
                                "level": "INFO",
                                "message": (
                                    f"early stopping at step {state.global_step}: eval loss has not improved for "
                                    f"{self.patience} evaluations (best {self.best:.4f})"
                                ),
                            },
                        )

    return RayReport, Progress, EarlyStop


def _compute_classification_metrics(pred) -> dict[str, float]:
    import numpy as np

    logits = pred.predictions[0] if isinstance(pred.predictions, tuple) else pred.predictions
    y_pred = np.argmax(logits, axis=-1)
    y = pred.label_ids
    f1s = []
    for c in np.unique(np.concatenate([y, y_pred])):
        tp = np.sum((y_pred == c) & (y == c))
        fp = np.sum((y_pred == c) & (y != c))
        fn = np.sum((y_pred != c) & (y == c))
        f1s.append(0.0 if tp == 0 else 2 * tp / (2 * tp + fp + fn))
    return {"accuracy": float(np.mean(y_pred == y)), "macro_f1": float(np.mean(f1s))}


# --------------------------------------------------------------------------- arguments


def training_arguments(
    spec: TrainingSpec, output_dir: str, *, has_eval: bool, world: int, use_cpu: bool
):
    from transformers import TrainingArguments

    hp: Hyperparameters = spec.hyperparameters
    eval_steps = hp.eval_interval_steps or 50
    return TrainingArguments(
        output_dir=output_dir,
        num_train_epochs=float(hp.epochs or 1),
        max_steps=hp.max_steps if hp.max_steps else -1,
        learning_rate=hp.learning_rate,
        lr_scheduler_type=_SCHEDULERS[hp.lr_scheduler],
        warmup_steps=float(hp.warmup_ratio or 0.0),  # a float < 1 is a ratio of total steps
        per_device_train_batch_size=hp.per_device_batch_size,
        per_device_eval_batch_size=hp.per_device_batch_size,
        gradient_accumulation_steps=hp.gradient_accumulation_steps or 1,
        weight_decay=hp.weight_decay or 0.0,
        max_grad_norm=hp.max_grad_norm or 1.0,
        seed=hp.seed if hp.seed is not None else 42,
        eval_strategy="steps" if has_eval else "no",
        eval_steps=eval_steps,
        save_strategy="steps",
        save_steps=hp.checkpoint_interval_steps or 100,
        save_total_limit=2,
        logging_strategy="steps",
        logging_steps=1,
        logging_first_step=True,
        bf16=hp.precision is Precision.BF16,
        fp16=hp.precision is Precision.FP16 and not use_cpu,
        gradient_checkpointing=bool(hp.gradient_checkpointing),
        use_cpu=use_cpu,
        ddp_backend=("gloo" if use_cpu else None) if world > 1 else None,
        ddp_find_unused_parameters=False if world > 1 else None,
        remove_unused_columns=False,
        label_names=["labels"],
        prediction_loss_only=spec.task is not Task.SEQUENCE_CLASSIFICATION,
        report_to="none",
        disable_tqdm=True,
        dataloader_num_workers=0,
        save_only_model=False,
    )


# --------------------------------------------------------------------------- the loop


def build_trainer(
    spec: TrainingSpec,
    fs,
    *,
    rank: int,
    world: int,
    workdir: Path,
    ctx: dict[str, Any],
    use_cpu: bool = True,
    init_dir: Path | None = None,
):
    """Tokenised shard + model + Trainer (shared by the Ray loop, the bench baseline and
    the calibration)."""
    import torch
    from transformers import Trainer

    hp = spec.hyperparameters
    max_len = hp.max_seq_length or 128
    error: BaseException | None = None
    tokenizer = model = evalset = None
    train: list[dict] = []
    # Problems that a retry can't fix (the model won't load, a row is bad) are agreed on
    # by all ranks here and returned, not raised: Ray Train would retry a raised error.
    try:
        tokenizer = load_tokenizer(spec.base_model_source)
        source = None
        if (
            init_dir is not None
            and (init_dir / "config.json").exists()
            and not (init_dir / "adapter_config.json").exists()
        ):
            source = str(init_dir)  # continue from full weights
        model = apply_method(load_model(spec, tokenizer, source), spec, init_dir)
    except (OSError, ValueError, ImportError) as exc:
        error = ModelLoadError(
            f"from_pretrained could not load the model {spec.base_model_source}: {exc}"
        )
    if error is None:
        try:
            rows = tdata.read_rows(fs, fs_path(spec.train_uri), spec.task, rank=rank, world=world)
            train = tdata.encode(
                spec.task, rows, tokenizer, label_names=spec.label_names, max_len=max_len
            )
            if spec.validation_uri:
                rows = tdata.read_rows(fs, fs_path(spec.validation_uri), spec.task)
                try:
                    evalset = (
                        tdata.encode(
                            spec.task,
                            rows,
                            tokenizer,
                            label_names=spec.label_names,
                            max_len=max_len,
                        )
                        or None
                    )
                except tdata.BadDataError as exc:
                    raise tdata.BadDataError(exc.row, exc.message, "validation") from exc
        except tdata.BadDataError as exc:
            error = exc if exc.split else tdata.BadDataError(exc.row, exc.message, "train")
    if rank == 0 and error is None:
        started_after = ""
        if ctx.get("submitted_at"):  # wall clocks of one cluster: good to a fraction of a second
            started_after = f"; the worker started {ctx['t_start_wall'] - ctx['submitted_at']:.1f}s after submission"
        ctx["sink"].emit(
            "log",
            {
                "level": "INFO",
                "message": f"model loaded and {len(train)} training examples "
                f"tokenised on rank 0 in {time.monotonic() - ctx.get('t_start', time.monotonic()):.1f}s"
                + started_after,
            },
        )
    counts = [(len(train), _picklable(error))]
    if world > 1 and torch.distributed.is_initialized():
        counts = [None] * world
        torch.distributed.all_gather_object(counts, (len(train), _picklable(error)))
    errors = [e for _n, e in counts if e is not None]
    if errors:
        raise PreparationFailed(errors[0])
    count = max(n for n, _e in counts)
    if min(n for n, _e in counts) == 0:
        raise PreparationFailed(
            tdata.BadDataError(
                None,
                "the training split has no usable rows"
                if world == 1
                else f"the training split has too few usable rows for {world} workers",
                "train",
            )
        )
    train = tdata.equalise(train, count)
    ctx.update(
        train_examples=count * world,
        global_batch=hp.per_device_batch_size * (hp.gradient_accumulation_steps or 1) * world,
    )

    args = training_arguments(
        spec, str(workdir / "hf"), has_eval=evalset is not None, world=world, use_cpu=use_cpu
    )
    collator = tdata.Collator(
        tokenizer.pad_token_id, token_labels=spec.task is not Task.SEQUENCE_CLASSIFICATION
    )
    shard_loader = _shard_loader_class()
    seed = args.seed

    class ShardTrainer(Trainer):
        # Each worker already holds only its shard: don't let accelerate shard it again.
        def get_train_dataloader(self):
            return shard_loader(
                self.train_dataset,
                batch_sampler=EpochBatchSampler(
                    len(self.train_dataset), self._train_batch_size, seed
                ),
                collate_fn=self.data_collator,
                num_workers=0,
            )

    RayReport, Progress, EarlyStop = _callbacks(ctx)
    progress = Progress()
    callbacks = [progress]
    if ctx.get("report_to_ray", True):
        callbacks.insert(0, RayReport())
    if evalset is not None and hp.early_stopping_patience:
        callbacks.append(EarlyStop(hp.early_stopping_patience, hp.early_stopping_threshold or 0.0))
    trainer = ShardTrainer(
        model=model,
        args=args,
        train_dataset=train,
        eval_dataset=evalset,
        data_collator=collator,
        processing_class=tokenizer,
        compute_metrics=_compute_classification_metrics
        if spec.task is Task.SEQUENCE_CLASSIFICATION
        else None,
        callbacks=callbacks,
    )
    return trainer, tokenizer, progress


class ModelLoadError(OSError):
    """The base (or continued-from) model or its tokenizer could not be loaded."""


class PreparationFailed(Exception):
    """Carries a non-retryable error out of ``build_trainer`` to be returned, not raised."""

    def __init__(self, error: BaseException) -> None:
        super().__init__(str(error))
        self.error = error


def _picklable(exc: BaseException | None) -> BaseException | None:
    import pickle

    if exc is None:
        return None
    try:
        pickle.loads(pickle.dumps(exc))
        return exc
    except Exception:  # noqa: BLE001 - fall back to the message
        return RuntimeError(f"{type(exc).__name__}: {exc}")


def _restore_dir(spec: TrainingSpec, fs, workdir: Path) -> Path | None:
    """A local copy of the checkpoint to resume from: Ray's (worker restart) first, else
    the spec's (resume of an earlier run)."""
    import ray.train

    checkpoint = ray.train.get_checkpoint()
    local = workdir / "resume"
    if checkpoint is not None:
        return Path(checkpoint.to_directory(str(local)))
    if spec.resume_from_checkpoint:
        return download_dir(fs, spec.resume_from_checkpoint, local)
    return None


def write_output(
    trainer, tokenizer, spec: TrainingSpec, fs, s3: S3Access, workdir: Path, metrics: Metrics
) -> Output:
    """The final Hugging Face folder (adapter or full weights, tokenizer, arguments, metrics;
    ``merged/`` for LoRA) uploaded to ``output_prefix``."""
    out = workdir / "output"
    model = trainer.model
    lora = spec.method is TuningMethod.LORA
    trainable = trainable_parameters(model)
    model.save_pretrained(str(out), safe_serialization=True)
    tokenizer.save_pretrained(str(out))
    info = {
        "job_name": spec.job_name,
        "run_name": spec.run_name,
        "task": spec.task.name,
        "method": spec.method.name,
        "base_model": spec.base_model_source,
        "label_names": list(spec.label_names),
        "hyperparameters": jsonable(spec.hyperparameters),
        "init_weights_uri": spec.init_weights_uri,
        "resume_from_checkpoint": spec.resume_from_checkpoint,
    }
    (out / "training_args.json").write_text(json.dumps(info, indent=2))
    (out / "metrics.json").write_text(json.dumps(jsonable(metrics), indent=2))
    if lora:
        merged = model.merge_and_unload()
        merged.save_pretrained(str(out / "merged"), safe_serialization=True)
        tokenizer.save_pretrained(str(out / "merged"))
    prefix = f"{s3.bucket}/{spec.output_prefix.strip('/')}"
    size = upload_dir(fs, out, prefix)
    uri = f"s3://{prefix}"
    return Output(
        uri=uri,
        merged_model_uri=f"{uri}/merged" if lora else "",
        is_adapter_only=lora,
        label_names=tuple(spec.label_names),
        step=metrics.step,
        size_bytes=size,
        trainable_parameter_count=trainable,
    )


def _final_metrics(trainer, progress, ctx: dict[str, Any]) -> Metrics:
    state = trainer.state
    losses = [h["loss"] for h in state.log_history if "loss" in h]
    evals = ctx["evals"]
    last = evals[-1] if evals else None
    best = min(
        (e for e in evals if e["eval_loss"] is not None), key=lambda e: e["eval_loss"], default=None
    )
    return Metrics(
        step=state.global_step,
        epoch=float(state.epoch or 0.0),
        train_loss=losses[-1] if losses else None,
        learning_rate=progress.last_lr,
        samples_per_second=progress.samples_per_second(),
        eval_step=last["step"] if last else 0,
        eval_loss=last["eval_loss"] if last else None,
        eval_metrics=last["metrics"] if last else {},
        best_eval_loss=best["eval_loss"] if best else None,
        best_eval_step=best["step"] if best else 0,
    )


def train_loop_per_worker(config: dict[str, Any]) -> dict[str, Any] | None:
    """Ray Train entry point. Returns (rank 0) {output, metrics, steps, checkpoint_uri}."""
    import ray.train
    import torch

    spec: TrainingSpec = config["spec"]
    s3: S3Access = config["s3"]
    context = ray.train.get_context()
    rank, world = context.get_world_rank(), context.get_world_size()
    sink: EventSink = config["sink_factory"]() if rank == 0 else NullSink()
    if rank == 0:
        _note_placement_group(sink)
    cpus = config.get("cpus_per_worker") or 1
    torch.set_num_threads(max(1, int(cpus)))
    fs = s3.filesystem()
    workdir = Path(tempfile.mkdtemp(prefix=f"mtw-train-r{rank}-"))
    ctx: dict[str, Any] = {
        "t_start": time.monotonic(),
        "t_start_wall": time.time(),
        "submitted_at": config.get("submitted_at"),
        "rank": rank,
        "world": world,
        "sink": sink,
        "task": spec.task,
        "evals": [],
        "checkpoint_root": f"{fs_path(spec.storage_path)}/{spec.run_name}",
    }
    span = worker_span(
        "training-worker", "training.worker", config.get("traceparent") or spec.traceparent,
        config.get("otlp_endpoint") or "", {"mtw.job": spec.job_name, "mtw.run": spec.run_name, "rank": rank},
    )
    try:
        with span:
            init_dir = (
                download_dir(fs, spec.init_weights_uri, workdir / "init")
                if spec.init_weights_uri
                else None
            )
            resume = _restore_dir(spec, fs, workdir)
            if resume is not None and rank == 0:
                sink.emit(
                    "log",
                    {
                        "level": "INFO",
                        "message": f"resuming from checkpoint {resume.name}"
                        if ray.train.get_checkpoint() is not None
                        else f"resuming from {spec.resume_from_checkpoint}",
                    },
                )
            try:
                trainer, tokenizer, progress = build_trainer(
                    spec,
                    fs,
                    rank=rank,
                    world=world,
                    workdir=workdir,
                    ctx=ctx,
                    use_cpu=not spec.hyperparameters.use_gpu,
                    init_dir=init_dir,
                )
            except PreparationFailed as failed:
                return {"error": failed.error} if rank == 0 else None
            trainer.train(resume_from_checkpoint=str(resume) if resume is not None else None)
            if trainer.eval_dataset is not None and (
                not ctx["evals"] or ctx["evals"][-1]["step"] != trainer.state.global_step
            ):
                trainer.evaluate()
            metrics = _final_metrics(trainer, progress, ctx)
            if rank != 0:
                return None
            output = write_output(trainer, tokenizer, spec, fs, s3, workdir, metrics)
            sink.emit("log", {"level": "INFO", "message": f"model written to {output.uri}"})
            return {
                "output": output,
                "metrics": metrics,
                "steps": trainer.state.global_step,
                "checkpoint_uri": ctx.get("last_checkpoint", ""),
                "stopped_early": ctx.get("stopped_early"),
            }
    finally:
        flush_spans()
        rmtree_quiet(workdir)


def _note_placement_group(sink: EventSink) -> None:
    """Tells the sink which placement group holds this worker group (if it wants to know)."""
    import ray.util

    note = getattr(sink, "note_placement_group", None)
    group = ray.util.get_current_placement_group()
    if note is not None and group is not None:
        note(group.id.hex())


os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
