"""``mtw jobs …``: base models, estimate, create, watch (a live progress bar and loss line),
list, show, cancel, resume, delete. JOB is a job id or a full name; VERSION is
``DATASET@N`` or a full dataset version name."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from mtw.cli import render
from mtw.cli.app import State
from mtw.common.v1 import job_state_pb2

app = typer.Typer(no_args_is_help=True, rich_markup_mode="rich")

_STATE_STYLE = {"SUCCEEDED": "green", "FAILED": "red", "CANCELLED": "yellow", "CANCELLING": "yellow",
                "RUNNING": "cyan", "PREPARING": "cyan", "QUEUED": "dim"}
TERMINAL = {job_state_pb2.JOB_STATE_SUCCEEDED, job_state_pb2.JOB_STATE_FAILED, job_state_pb2.JOB_STATE_CANCELLED}


def _state(ctx: typer.Context) -> State:
    return ctx.ensure_object(State)


def state_name(value: int) -> str:
    return job_state_pb2.JobState.Name(value).removeprefix("JOB_STATE_")


def _styled(value: int) -> str:
    name = state_name(value)
    return f"[{_STATE_STYLE.get(name, 'white')}]{name}[/]"


def parse_settings(values: list[str] | None) -> dict[str, Any]:
    """``["epochs=3", "learning_rate=2e-4", "lora.rank=16"]`` → hyperparameters mapping."""
    out: dict[str, Any] = {}
    for item in values or []:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise typer.BadParameter(f"expected NAME=VALUE, got {item!r}", param_hint="--set")
        value: Any = raw
        if raw.lower() in ("true", "false"):
            value = raw.lower() == "true"
        else:
            for cast in (int, float):
                try:
                    value = cast(raw)
                    break
                except ValueError:
                    continue
        if key.startswith("lora."):
            sub = key.split(".", 1)[1]
            lora = out.setdefault("lora", {})
            lora[sub] = raw.split(",") if sub == "target_modules" else value
        else:
            out[key] = value
    return out


def _spec_kwargs(preset: str | None, method: str | None, task: str | None, settings: list[str] | None,
                 accept_licence: bool, display_name: str) -> dict[str, Any]:
    return {"preset": preset, "method": method, "task": task, "hyperparameters": parse_settings(settings),
            "licence_acknowledged": accept_licence, "display_name": display_name}


Model = Annotated[str, typer.Argument(metavar="BASE_MODEL", help="e.g. all-minilm-l6-v2 (see `mtw jobs models`).")]
Version = Annotated[str, typer.Argument(metavar="VERSION", help="Dataset version, DATASET@N.")]
PresetOpt = Annotated[str | None, typer.Option(help="quick, balanced, thorough, auto or custom.")]
MethodOpt = Annotated[str | None, typer.Option(help="lora (default) or full.")]
TaskOpt = Annotated[str | None, typer.Option(help="Default: the dataset version's task.")]
SetOpt = Annotated[list[str] | None, typer.Option("--set", "-s", help="NAME=VALUE hyperparameter (repeatable), "
                                                  "e.g. epochs=3, learning_rate=2e-4, lora.rank=16.")]
LicenceOpt = Annotated[bool, typer.Option("--accept-licence", help="Acknowledge the base model's licence.")]


@app.command()
def models(ctx: typer.Context) -> None:
    """List the base models a job can start from."""
    state = _state(ctx)
    items = list(state.get_client().jobs.base_models())
    if state.json:
        render.print_json(items)
        return
    table = Table(title="Base models")
    for column in ("name", "tasks", "parameters", "context", "licence"):
        table.add_column(column)
    for m in items:
        tasks = ", ".join(render.task_label(t) for t in m.supported_tasks)
        licence = m.licence_name + (" (must accept)" if m.licence_requires_acknowledgement else "")
        table.add_row(m.name.removeprefix("baseModels/"), tasks, f"{m.parameter_count / 1e6:,.1f} M",
                      str(m.context_length), licence)
    state.out.print(table)


@app.command()
def estimate(ctx: typer.Context, base_model: Model, version: Version, preset: PresetOpt = None,
             method: MethodOpt = None, task: TaskOpt = None, set_: SetOpt = None) -> None:
    """Say what a job would do — settings, steps, memory, time — without starting it."""
    state = _state(ctx)
    e = state.get_client().jobs.estimate(base_model, version, **_spec_kwargs(preset, method, task, set_, False, ""))
    if state.json:
        render.print_json(e)
        return
    duration = f"{e.estimated_duration.seconds / 60:,.1f} min" if e.HasField("estimated_duration") else "unknown"
    fits = "[green]fits[/]" if e.fits else "[red]does not fit[/]"
    state.out.print(f"{e.train_examples:,} examples, {e.train_tokens:,} tokens per epoch, "
                    f"{e.total_steps:,} steps; peak memory {render.human_bytes(e.peak_memory_bytes)} per worker "
                    f"({fits} in {render.human_bytes(e.worker_memory_bytes)}); about {duration}")
    for warning in e.warnings:
        state.out.print(f"[yellow]![/] {render.escape(warning)}")
    for alt in e.alternatives:
        state.out.print(f"[cyan]→[/] {render.escape(alt.explanation)}")
    if e.licence_acknowledgement_required:
        state.out.print("[yellow]The base model's licence must be accepted: pass --accept-licence to create.[/]")


@app.command()
def create(
    ctx: typer.Context, base_model: Model, version: Version, preset: PresetOpt = None, method: MethodOpt = None,
    task: TaskOpt = None, set_: SetOpt = None, accept_licence: LicenceOpt = False,
    job_id: Annotated[str, typer.Option("--id", help="Job id (generated when empty).")] = "",
    display_name: Annotated[str, typer.Option(help="Human-readable name.")] = "",
    register_to: Annotated[str, typer.Option(
        "--register-to", metavar="MODEL", help="Register the result as a new version of this model.")] = "",
    continue_from: Annotated[str, typer.Option(
        "--continue-from", metavar="JOB", help="Start from this SUCCEEDED job's trained weights.")] = "",
    branch_from: Annotated[str, typer.Option(
        "--branch-from", metavar="JOB", help="Record this job as the one these settings were changed from.")] = "",
    watch_: Annotated[bool, typer.Option("--watch", "-w", help="Follow the job until it ends.")] = False,
) -> None:
    """Create a tuning job (it queues, then runs on the cluster)."""
    state = _state(ctx)
    client = state.get_client()
    job = client.jobs.create(base_model, version, job_id=job_id,
                             **_spec_kwargs(preset, method, task, set_, accept_licence, display_name),
                             register_to_model=register_to, continued_from=continue_from or None,
                             branched_from=branch_from or None)
    if state.json and not watch_:
        render.print_json(job)
        return
    state.out.print(f"[green]✓[/] Created [bold]{render.escape(job.name)}[/] ({_styled(job.state)})")
    if watch_:
        _follow(state, client, job.name)


@app.command()
def watch(ctx: typer.Context, job: Annotated[str, typer.Argument(metavar="JOB")],
          after: Annotated[int, typer.Option(help="Start after this event number.")] = 0) -> None:
    """Follow a job live: state changes, a progress bar with loss, evaluations, checkpoints."""
    state = _state(ctx)
    _follow(state, state.get_client(), job, after)


def _follow(state: State, client: Any, job: str, after: int = 0) -> None:
    if state.json:
        for event in client.jobs.watch(job, after=after):
            render.print_json(event)
        return
    current = client.jobs.get(job)
    columns = (TextColumn("[bold]{task.description}"), BarColumn(), TextColumn("{task.completed:,.0f}/{task.total:,.0f}"),
               TextColumn("{task.fields[line]}"), TimeElapsedColumn())
    with Progress(*columns, console=state.out, transient=False) as progress:
        bar = progress.add_task("training", total=max(1, current.progress.total_steps), line="")
        for event in client.jobs.watch(job, after=after):
            kind = event.WhichOneof("event")
            if kind == "state_change":
                change = event.state_change
                progress.console.print(f"{_styled(change.state)} {render.escape(change.message)}")
                if change.HasField("failure") and change.failure.hint:
                    progress.console.print(f"  [red]{render.escape(change.failure.error.message)}[/]")
                    progress.console.print(f"  hint: {render.escape(change.failure.hint)}")
            elif kind == "step_metrics":
                m = event.step_metrics
                eta = f" ETA {m.eta.seconds // 60}:{m.eta.seconds % 60:02d}" if m.HasField("eta") else ""
                progress.update(bar, total=max(1, m.total_steps), completed=m.step,
                                line=f"loss {m.loss:.4f}  lr {m.learning_rate:.2e}  {m.samples_per_second:.1f}/s{eta}")
            elif kind == "eval_metrics":
                e = event.eval_metrics
                extra = "  ".join(f"{k} {v:.3f}" for k, v in sorted(e.metrics.items()))
                progress.console.print(f"  eval @ step {e.step}: loss {e.loss:.4f}  {extra}"
                                       + ("  [green]best[/]" if e.is_best else ""))
            elif kind == "checkpoint_saved":
                progress.console.print(f"  checkpoint @ step {event.checkpoint_saved.step}")
            elif kind == "log":
                progress.console.print(f"  {render.escape(event.log.message)}")
    final = client.jobs.get(job)
    if final.state == job_state_pb2.JOB_STATE_SUCCEEDED:
        state.out.print(f"[green]✓[/] Output: {render.escape(final.output.uri)}")


@app.command("list")
def list_(ctx: typer.Context,
          filter: Annotated[str, typer.Option(help="e.g. state=JOB_STATE_RUNNING")] = "",
          limit: Annotated[int | None, typer.Option(min=1)] = None) -> None:
    """List the project's tuning jobs, newest first."""
    state = _state(ctx)
    jobs = list(state.get_client().jobs.list(filter=filter, limit=limit))
    if state.json:
        render.print_json(jobs)
        return
    if not jobs:
        state.out.print("No tuning jobs yet. Start one with [bold]mtw jobs create BASE_MODEL DATASET@N[/].")
        return
    table = Table()
    for column in ("job", "state", "base model", "dataset", "progress", "loss", "created"):
        table.add_column(column)
    for j in jobs:
        loss = f"{j.latest_metrics.train_loss:.4f}" if j.latest_metrics.step else ""
        table.add_row(j.name.rsplit("/", 1)[1], _styled(j.state), j.base_model.removeprefix("baseModels/"),
                      j.dataset_version.split("/datasets/")[-1].replace("/versions/", "@"),
                      f"{j.progress.step}/{j.progress.total_steps}", loss, render.when(j.create_time))
    state.out.print(table)


@app.command()
def show(ctx: typer.Context, job: Annotated[str, typer.Argument(metavar="JOB")]) -> None:
    """Show a job: state, settings, progress, metrics, output or failure."""
    state = _state(ctx)
    j = state.get_client().jobs.get(job)
    if state.json:
        render.print_json(j)
        return
    out = state.out
    out.print(f"[bold]{render.escape(j.name)}[/]  {_styled(j.state)}  {render.escape(j.progress.message)}")
    out.print(f"  {j.base_model} on {j.dataset_version}")
    out.print(f"  step {j.progress.step}/{j.progress.total_steps}, restarts {j.restart_count}")
    if j.latest_metrics.step:
        out.print(f"  loss {j.latest_metrics.train_loss:.4f}"
                  + (f", eval loss {j.latest_metrics.eval_loss:.4f}" if j.latest_metrics.HasField("eval_loss") else ""))
    if j.HasField("output"):
        out.print(f"  output {j.output.uri}")
    if j.HasField("failure"):
        out.print(f"  [red]{render.escape(j.failure.error.message)}[/]")
        if j.failure.hint:
            out.print(f"  hint: {render.escape(j.failure.hint)}")


@app.command()
def cancel(ctx: typer.Context, job: Annotated[str, typer.Argument(metavar="JOB")]) -> None:
    """Ask a job to stop (best effort; it may still finish first)."""
    state = _state(ctx)
    j = state.get_client().jobs.cancel(job)
    if state.json:
        render.print_json(j)
    else:
        state.out.print(f"{render.escape(j.name)} is {_styled(j.state)}")


@app.command()
def resume(ctx: typer.Context, job: Annotated[str, typer.Argument(metavar="JOB")], set_: SetOpt = None,
           watch_: Annotated[bool, typer.Option("--watch", "-w")] = False) -> None:
    """Continue a FAILED or CANCELLED job from its last checkpoint, as a new job."""
    state = _state(ctx)
    client = state.get_client()
    j = client.jobs.resume(job, **parse_settings(set_))
    if state.json and not watch_:
        render.print_json(j)
        return
    state.out.print(f"[green]✓[/] Created [bold]{render.escape(j.name)}[/], resuming {j.lineage.resumed_from} "
                    f"from step {j.lineage.resumed_from_step}")
    if watch_:
        _follow(state, client, j.name)


@app.command()
def delete(ctx: typer.Context, job: Annotated[str, typer.Argument(metavar="JOB")]) -> None:
    """Delete a finished job with its checkpoints, outputs and events."""
    state = _state(ctx)
    state.get_client().jobs.delete(job)
    if not state.json:
        state.out.print(f"[green]✓[/] Deleted {render.escape(job)}")
