"""``mtw models …``: registered models and their versions (step 4) — list, show, register,
alias (set, move, remove, roll back, history), card, download, export, predict.
MODEL is a model id or a full name; VERSION is ``MODEL@N``, ``MODEL@ALIAS`` or a full name."""

from __future__ import annotations

import dataclasses
from typing import Annotated

import typer
from rich.markdown import Markdown
from rich.table import Table

from mtw.cli import render
from mtw.cli.app import State
from mtw.client.models import Classification, short_version

app = typer.Typer(no_args_is_help=True, rich_markup_mode="rich")

ModelArg = Annotated[str, typer.Argument(metavar="MODEL", help="Model id, e.g. genres.")]
VersionArg = Annotated[str, typer.Argument(metavar="VERSION", help="MODEL@N or MODEL@ALIAS, e.g. genres@production.")]
ACTIONS = {1: "set", 2: "removed", 3: "rolled back"}


def _state(ctx: typer.Context) -> State:
    return ctx.ensure_object(State)


@app.command("list")
def list_(ctx: typer.Context, model: Annotated[str | None, typer.Argument(
              metavar="[MODEL]", help="Show this model's versions instead of the models.")] = None,
          filter: Annotated[str, typer.Option(help='e.g. aliases:production or tags.team="support"')] = "",
          limit: Annotated[int | None, typer.Option(min=1)] = None) -> None:
    """List the project's registered models, or one model's versions."""
    state = _state(ctx)
    client = state.get_client()
    if model is None:
        models = list(client.models.list(filter=filter, limit=limit))
        if state.json:
            render.print_json(models)
            return
        if not models:
            state.out.print("No registered models yet. Register a tuning job's output with "
                            "[bold]mtw models register MODEL JOB[/].")
            return
        table = Table()
        for column in ("model", "task", "versions", "aliases", "latest", "updated"):
            table.add_column(column)
        for m in models:
            aliases = ", ".join(f"{a}→{v.rsplit('/', 1)[1]}" for a, v in sorted(m.aliases.items()))
            table.add_row(m.name.rsplit("/", 1)[1], render.task_label(m.task), str(m.version_count), aliases,
                          short_version(m.latest_version), render.when(m.update_time))
        state.out.print(table)
        return
    versions = list(client.models.versions(model, filter=filter, limit=limit))
    if state.json:
        render.print_json(versions)
        return
    table = Table(title=model)
    for column in ("version", "aliases", "tuning job", "metrics", "size", "created"):
        table.add_column(column)
    for v in versions:
        metrics = "  ".join(f"{k} {val:.3f}" for k, val in sorted(v.metrics.items())[:3])
        table.add_row(v.version_id, ", ".join(v.aliases), v.lineage.tuning_job.rsplit("/", 1)[-1], metrics,
                      render.human_bytes(v.artifacts.size_bytes), render.when(v.create_time))
    state.out.print(table)


@app.command()
def show(ctx: typer.Context, version: VersionArg) -> None:
    """A version: what it is, where it comes from, its aliases and files."""
    state = _state(ctx)
    v = state.get_client().models.version(version)
    if state.json:
        render.print_json(v)
        return
    state.out.print(f"[bold]{render.escape(v.name)}[/]  {render.task_label(v.task)}"
                    + (f"  aliases: {', '.join(v.aliases)}" if v.aliases else "")
                    + ("  [red]DELETED[/]" if v.state == 2 else ""))
    if v.description:
        state.out.print(render.escape(v.description))
    state.out.print(f"base model {v.base_model}; trained by {v.lineage.tuning_job} on {v.lineage.dataset_version}")
    if v.label_names:
        state.out.print("classes: " + ", ".join(v.label_names))
    if v.metrics:
        state.out.print("metrics: " + "  ".join(f"{k} {val:.4g}" for k, val in sorted(v.metrics.items())))
    kind = "LoRA adapter (needs the base model)" if v.is_adapter_only else "full model"
    state.out.print(f"{kind}: {len(v.artifacts.files)} files, {render.human_bytes(v.artifacts.size_bytes)}"
                    + (f"; merged copy at {v.artifacts.merged_uri}" if v.artifacts.merged_uri else ""))


@app.command()
def register(ctx: typer.Context, model: ModelArg, job: Annotated[str, typer.Argument(metavar="JOB")],
             description: Annotated[str, typer.Option(help="What this version is for.")] = "") -> None:
    """Register a SUCCEEDED tuning job's output as the model's next version."""
    state = _state(ctx)
    v = state.get_client().models.register(model, job, description=description)
    if state.json:
        render.print_json(v)
        return
    state.out.print(f"[green]✓[/] Registered [bold]{render.escape(v.name)}[/]")


@app.command()
def alias(
    ctx: typer.Context, model: ModelArg, name: Annotated[str, typer.Argument(metavar="ALIAS")],
    version: Annotated[str | None, typer.Argument(metavar="[VERSION]", help="Version number or another alias.")] = None,
    remove: Annotated[bool, typer.Option("--remove", help="Remove the alias.")] = False,
    rollback: Annotated[bool, typer.Option("--rollback", help="Move it back to its previous version.")] = False,
    reason: Annotated[str, typer.Option(help="Recorded in the alias history.")] = "",
) -> None:
    """Point ALIAS at VERSION, or --remove it, or --rollback it; without either, show its history."""
    state = _state(ctx)
    models = state.get_client().models
    if remove:
        result = models.delete_alias(model, name, reason=reason)
    elif rollback:
        result = models.rollback_alias(model, name, reason=reason)
    elif version is not None:
        result = models.set_alias(model, name, version, reason=reason)
    else:
        entries = list(models.alias_history(model, filter=f'alias="{name}"'))
        if state.json:
            render.print_json(entries)
            return
        table = Table(title=f"{model}@{name}")
        for column in ("when", "change", "version", "before", "by", "reason"):
            table.add_column(column)
        for e in entries:
            table.add_row(render.when(e.time), ACTIONS.get(e.action, "?"), e.model_version.rsplit("/", 1)[-1],
                          e.previous_model_version.rsplit("/", 1)[-1], e.actor.rsplit("/", 1)[-1],
                          render.escape(e.reason))
        state.out.print(table)
        return
    if state.json:
        render.print_json(result)
        return
    target = result.aliases.get(name)
    state.out.print(f"[green]✓[/] {name} → {short_version(target)}" if target else f"[green]✓[/] {name} removed")


@app.command()
def card(ctx: typer.Context, version: VersionArg,
         raw: Annotated[bool, typer.Option("--raw", help="Print the Markdown as it is.")] = False) -> None:
    """The version's model card."""
    state = _state(ctx)
    text = state.get_client().models.card(version)
    if state.json:
        render.print_json({"model_version": version, "markdown": text})
    elif raw:
        state.out.print(text, markup=False, highlight=False)
    else:
        state.out.print(Markdown(text.split("---\n", 2)[-1] if text.startswith("---\n") else text))


@app.command()
def download(ctx: typer.Context, version: VersionArg,
             target: Annotated[str, typer.Argument(metavar="FOLDER")],
             merged: Annotated[bool, typer.Option("--merged", help="The merged export (see `export`).")] = False
             ) -> None:
    """Download the version's folder (each file checked); it loads with transformers/peft."""
    state = _state(ctx)
    path = state.get_client().models.download(version, target, merged=merged)
    state.out.print(f"[green]✓[/] {version} → {path}")


@app.command()
def export(ctx: typer.Context, version: VersionArg,
           dtype: Annotated[str, typer.Option(help="float32, float16 or bfloat16; default as the base.")] = "") -> None:
    """Merge a LoRA version into its base as a standalone model (checked before it is offered)."""
    state = _state(ctx)
    x = state.get_client().models.export(version, dtype=dtype)
    if state.json:
        render.print_json(x)
        return
    if x.state == 4:
        state.out.print(f"[green]✓[/] {x.name}: {render.human_bytes(x.size_bytes)}, checked on "
                        f"{x.verification.example_count} examples; download it with --merged")
    else:
        state.out.print(f"[red]✗[/] {x.name}: {render.escape(x.failure.error.message) or 'not finished'}")


@app.command()
def predict(
    ctx: typer.Context, version: VersionArg,
    texts: Annotated[list[str], typer.Argument(metavar="TEXT...", help="One or more inputs.")],
    top_k: Annotated[int, typer.Option(help="Classes to show (0: all).")] = 0,
    max_new_tokens: Annotated[int | None, typer.Option(help="Generation: most tokens to write.")] = None,
    temperature: Annotated[float | None, typer.Option(help="Generation: 0 is greedy.")] = None,
    stream: Annotated[bool, typer.Option("--stream", help="Generation: print the text as it comes.")] = False,
) -> None:
    """Run the version on TEXT: labels with scores, or generated text."""
    state = _state(ctx)
    models = state.get_client().models
    generation = {k: v for k, v in {"max_new_tokens": max_new_tokens, "temperature": temperature}.items()
                  if v is not None}
    if stream and not state.json:
        for text in texts:
            for delta in models.stream(version, text, **generation):
                state.out.print(render.escape(delta.text), end="")
            state.out.print()
        return
    answer = models.predict(version, list(texts), top_k=top_k, **generation)
    if state.json:
        render.print_json({"model_version": answer.model_version,
                           "predictions": [dataclasses.asdict(p) for p in answer.predictions]})
        return
    for text, result in zip(texts, answer.predictions, strict=True):
        if isinstance(result, Classification):
            scores = "  ".join(f"{s.label} {s.score:.3f}" for s in result.scores)
            state.out.print(f"[bold]{render.escape(result.label)}[/] ({result.score:.3f})  {scores}  "
                            f"[dim]{render.escape(text[:60])}[/]")
        else:
            state.out.print(f"[dim]{render.escape(text)}[/]{render.escape(result.text)}  "
                            f"[dim]({result.finish_reason.lower()})[/]")
