"""``mtw evals …``: evaluate a tuning job (next to its base model), follow it, read the
metrics and the worst mistakes, compare evaluations, and fine-tune again from a
recommendation. EVAL is an evaluation id or a full name."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from mtw.cli import render
from mtw.cli.app import State
from mtw.cli.jobs import state_name

app = typer.Typer(no_args_is_help=True, rich_markup_mode="rich")
Eval = Annotated[str, typer.Argument(metavar="EVAL", help="Evaluation id or name.")]
_SEVERITY = {1: "[dim]info[/]", 2: "[yellow]warning[/]", 3: "[red]critical[/]"}


def _state(ctx: typer.Context) -> State:
    return ctx.ensure_object(State)


def _metrics_table(e) -> Table:
    table = Table(title=render.escape(e.results.summary))
    for column in ("metric", "value", "95 % interval", "base model"):
        table.add_column(column)
    for m in e.results.metrics:
        ci = m.confidence_interval
        interval = f"{ci.lower:.3f} – {ci.upper:.3f}" if m.HasField("confidence_interval") else ""
        base = f"{m.baseline_value:.3f}" if m.HasField("baseline_value") else ""
        table.add_row(m.name, f"{m.value:.4f}", interval, base)
    return table


@app.command()
def create(
    ctx: typer.Context,
    job: Annotated[str | None, typer.Option("--job", "-j", help="Tuning job to evaluate.")] = None,
    model: Annotated[str | None, typer.Option(
        "--model", help="Or a registered model version: MODEL@ALIAS, MODEL@N or a full name.")] = None,
    base_model: Annotated[str | None, typer.Option(help="Or a base model, e.g. tiny-gpt2.")] = None,
    version: Annotated[str | None, typer.Option(help="Dataset version DATASET@N (default: the job's).")] = None,
    split: Annotated[str, typer.Option(help="train, validation or test.")] = "",
    metric: Annotated[list[str] | None, typer.Option("--metric", "-m", help="Metric (repeatable).")] = None,
    max_examples: Annotated[int, typer.Option(help="Evaluate a sample of this many (0: all).")] = 0,
    watch_: Annotated[bool, typer.Option("--watch", "-w", help="Follow it until it ends.")] = False,
) -> None:
    """Evaluate a model on a split (a tuned model gets its base model alongside)."""
    state = _state(ctx)
    client = state.get_client()
    config = {"max_examples": max_examples} if max_examples else None
    e = client.evaluations.create(tuning_job=job, model_version=model, base_model=base_model,
                                  dataset_version=version, split=split, metrics=metric or (), config=config)
    if state.json and not watch_:
        render.print_json(e)
        return
    state.out.print(f"[green]✓[/] Created [bold]{render.escape(e.name)}[/] ({state_name(e.state)})"
                    + (f", baseline {e.baseline_evaluation}" if e.baseline_evaluation else ""))
    if watch_:
        _follow(state, client, e.name)


def _follow(state: State, client, name: str) -> None:
    for event in client.evaluations.watch(name):
        if state.json:
            render.print_json(event)
            continue
        kind = event.WhichOneof("event")
        if kind == "state_change":
            state.out.print(f"{state_name(event.state_change.state)} {render.escape(event.state_change.message)}")
        elif kind == "progress":
            p = event.progress.progress
            running = "  ".join(f"{k} {v:.3f}" for k, v in sorted(event.progress.running_metrics.items()))
            state.out.print(f"  {p.examples_done}/{p.total_examples}  {running}")
    if not state.json:
        _show(state, client.evaluations.get(name))


@app.command()
def watch(ctx: typer.Context, evaluation: Eval) -> None:
    """Follow an evaluation live."""
    state = _state(ctx)
    _follow(state, state.get_client(), evaluation)


def _show(state: State, e) -> None:
    out = state.out
    model = e.tuning_job or e.base_model or e.model_version
    out.print(f"[bold]{render.escape(e.name)}[/]  {state_name(e.state)}  {render.escape(e.progress.message)}")
    out.print(f"  {model} on {e.dataset_version} ({e.split})")
    if e.baseline_evaluation:
        out.print(f"  baseline {e.baseline_evaluation}")
    if e.HasField("results"):
        out.print(_metrics_table(e))
        out.print(f"  {e.results.example_count} examples, {e.results.examples_per_second:.1f}/s; "
                  f"{e.recommendation_count} recommendation(s): mtw evals recs {e.name.rsplit('/', 1)[1]}")
    if e.HasField("failure"):
        out.print(f"  [red]{render.escape(e.failure.error.message)}[/]")
        if e.failure.hint:
            out.print(f"  hint: {render.escape(e.failure.hint)}")


@app.command()
def show(ctx: typer.Context, evaluation: Eval) -> None:
    """Show an evaluation: state, metrics next to the base model's, counts."""
    state = _state(ctx)
    e = state.get_client().evaluations.get(evaluation)
    if state.json:
        render.print_json(e)
        return
    _show(state, e)


@app.command("list")
def list_(ctx: typer.Context, filter: Annotated[str, typer.Option(help='e.g. state=JOB_STATE_SUCCEEDED')] = "",
          limit: Annotated[int | None, typer.Option(min=1)] = None) -> None:
    """List the project's evaluations, newest first."""
    state = _state(ctx)
    items = list(state.get_client().evaluations.list(filter=filter, limit=limit))
    if state.json:
        render.print_json(items)
        return
    table = Table()
    for column in ("evaluation", "state", "model", "data", "summary"):
        table.add_column(column)
    for e in items:
        table.add_row(e.name.rsplit("/", 1)[1], state_name(e.state), e.tuning_job or e.base_model or e.model_version,
                      f"{e.dataset_version.split('/datasets/')[-1].replace('/versions/', '@')} ({e.split})",
                      render.escape(e.results.summary))
    state.out.print(table)


@app.command()
def examples(ctx: typer.Context, evaluation: Eval,
             filter: Annotated[str, typer.Option(help='e.g. reference="a" AND prediction="b"')] = "",
             order_by: Annotated[str, typer.Option(help="loss desc (default), score, score desc, row.")] = "",
             limit: Annotated[int, typer.Option(min=1)] = 20) -> None:
    """The examples, worst first."""
    state = _state(ctx)
    items = list(state.get_client().evaluations.examples(evaluation, filter=filter, order_by=order_by, limit=limit))
    if state.json:
        render.print_json(items)
        return
    table = Table()
    for column in ("row", "reference", "prediction", "score", "loss", "input"):
        table.add_column(column)
    for x in items:
        table.add_row(str(x.row), render.escape(x.reference[:60]), render.escape(x.prediction[:60]),
                      f"{x.score:.3f}" if x.HasField("score") else "", f"{x.loss:.3f}" if x.HasField("loss") else "",
                      render.escape(x.input[:80]))
    state.out.print(table)


@app.command()
def recs(ctx: typer.Context, evaluation: Eval) -> None:
    """What to change for the next tuning job, most severe first."""
    state = _state(ctx)
    items = list(state.get_client().evaluations.recommendations(evaluation))
    if state.json:
        render.print_json(items)
        return
    if not items:
        state.out.print("Nothing to change.")
    for r in items:
        state.out.print(f"{_SEVERITY.get(r.severity, '')} [bold]{render.escape(r.title)}[/] ({r.code})")
        state.out.print(f"  {render.escape(r.explanation)}")
        if r.applicable:
            state.out.print(f"  apply: [bold]mtw evals apply {r.name}[/]")


@app.command()
def apply(ctx: typer.Context, recommendation: Annotated[str, typer.Argument(metavar="RECOMMENDATION")],
          accept_licence: Annotated[bool, typer.Option("--accept-licence")] = False) -> None:
    """Fine-tune again: start a new tuning job from a recommendation."""
    state = _state(ctx)
    job = state.get_client().evaluations.apply(recommendation, licence_acknowledged=accept_licence)
    if state.json:
        render.print_json(job)
        return
    state.out.print(f"[green]✓[/] Created [bold]{render.escape(job.name)}[/]; follow it with "
                    f"mtw jobs watch {job.name.rsplit('/', 1)[1]}")


@app.command()
def compare(ctx: typer.Context, evaluations: Annotated[list[str], typer.Argument(metavar="EVAL...")]) -> None:
    """Metric deltas against the first evaluation and the examples whose outcome changed."""
    state = _state(ctx)
    c = state.get_client().evaluations.compare(evaluations)
    if state.json:
        render.print_json(c)
        return
    table = Table()
    table.add_column("metric")
    for name in c.evaluations:
        table.add_column(name.rsplit("/", 1)[1])
    for m in c.metrics:
        cells = [f"{m.values[0]:.4f}"] + [f"{v:.4f} ({d:+.4f}{'*' if s else ''})"
                                          for v, d, s in zip(m.values[1:], m.deltas[1:], m.significant[1:],
                                                             strict=True)]
        table.add_row(m.name, *cells)
    state.out.print(table)
    state.out.print(f"fixed {list(c.fixed_counts[1:])}, regressed {list(c.regressed_counts[1:])} (* significant)")


@app.command()
def cancel(ctx: typer.Context, evaluation: Eval) -> None:
    """Ask an evaluation to stop."""
    state = _state(ctx)
    e = state.get_client().evaluations.cancel(evaluation)
    state.out.print(f"{render.escape(e.name)} is {state_name(e.state)}")


@app.command()
def delete(ctx: typer.Context, evaluation: Eval) -> None:
    """Delete a finished evaluation with its example results and recommendations."""
    state = _state(ctx)
    state.get_client().evaluations.delete(evaluation)
    state.out.print(f"[green]✓[/] Deleted {render.escape(evaluation)}")
