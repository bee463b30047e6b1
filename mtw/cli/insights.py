"""``mtw insights …``: the satisfaction survey (answer, skip, show), the project's
experiment variant, and for admin keys the rollout and the success report.
VERSION is ``MODEL@N`` or a full model version name."""

from __future__ import annotations

from typing import Annotated

import typer

from mtw.cli import render
from mtw.cli.app import State

app = typer.Typer(no_args_is_help=True, rich_markup_mode="rich")
survey_app = typer.Typer(no_args_is_help=True, rich_markup_mode="rich")
rollout_app = typer.Typer(no_args_is_help=True, rich_markup_mode="rich")
app.add_typer(survey_app, name="survey", help="Rate a model version you created (optional, once).")
app.add_typer(rollout_app, name="rollout", help="Who may use the wizard (admin key).")

VersionArg = Annotated[str, typer.Argument(metavar="VERSION", help="MODEL@N, e.g. genres@3.")]


def _state(ctx: typer.Context) -> State:
    return ctx.ensure_object(State)


def parse_ease(values: list[str]) -> dict[str, int]:
    """``["dataset=5", "training=3"]`` → ``{"dataset": 5, "training": 3}``."""
    out: dict[str, int] = {}
    for value in values:
        step, sep, score = value.partition("=")
        if not sep or not score.strip().isdigit():
            raise typer.BadParameter(f"{value!r}: use STEP=1..5, e.g. training=4", param_hint="--ease")
        out[step.strip().lower()] = int(score)
    return out


def _print_survey(state: State, r) -> None:
    if state.json:
        render.print_json(r)
    elif r.skipped:
        state.out.print(f"[green]✓[/] Skipped the survey of {render.escape(r.name.removesuffix('/surveyResponse'))}")
    else:
        state.out.print(f"[green]✓[/] Thank you — recorded {r.overall}/5 for "
                        f"{render.escape(r.name.removesuffix('/surveyResponse'))}")
        if r.comment:
            state.out.print(f"  comment (personal data masked): {render.escape(r.comment)}")


@survey_app.command("answer")
def answer(ctx: typer.Context, version: VersionArg,
           overall: Annotated[int, typer.Option(min=1, max=5, help="Overall satisfaction, 1 to 5.")],
           ease: Annotated[list[str] | None, typer.Option(
               help="Ease of a step, STEP=1..5 (dataset, training, evaluation, save); repeatable.")] = None,
           comment: Annotated[str, typer.Option(help="What would you change?")] = "") -> None:
    """Answer the survey of a model version."""
    state = _state(ctx)
    r = state.get_client().insights.answer_survey(version, overall, ease=parse_ease(ease or []), comment=comment)
    _print_survey(state, r)


@survey_app.command("skip")
def skip(ctx: typer.Context, version: VersionArg) -> None:
    """Skip the survey of a model version (it will not be asked again)."""
    state = _state(ctx)
    _print_survey(state, state.get_client().insights.skip_survey(version))


@survey_app.command("show")
def show(ctx: typer.Context, version: VersionArg) -> None:
    """Show a model version's survey answer."""
    state = _state(ctx)
    r = state.get_client().insights.get_survey(version)
    if state.json:
        render.print_json(r)
        return
    state.out.print("skipped" if r.skipped else f"overall {r.overall}/5")
    for e in r.step_ease:
        state.out.print(f"  {render.escape(str(e.step))}: {e.ease}/5")
    if r.comment:
        state.out.print(f"  {render.escape(r.comment)}")


@app.command()
def variant(ctx: typer.Context, experiment: Annotated[str, typer.Argument(metavar="EXPERIMENT")]) -> None:
    """Show the project's variant of an experiment."""
    state = _state(ctx)
    a = state.get_client().insights.variant(experiment)
    if state.json:
        render.print_json(a)
        return
    params = ", ".join(f"{k}={v}" for k, v in sorted(a.parameters.items()))
    state.out.print(f"{render.escape(experiment)}: [bold]{render.escape(a.variant)}[/]"
                    + (f" ({render.escape(params)})" if params else ""))


@rollout_app.command("show")
def rollout_show(ctx: typer.Context) -> None:
    """Show the rollout (admin key)."""
    state = _state(ctx)
    c = state.get_client().insights.rollout()
    if state.json:
        render.print_json(c)
        return
    state.out.print(f"{c.rollout_percent:g}% of projects, plus {len(c.allowed_projects)} beta projects"
                    + (f"; contact: {render.escape(c.contact)}" if c.contact else ""))
    for p in c.allowed_projects:
        state.out.print(f"  {render.escape(p)}")


@rollout_app.command("set")
def rollout_set(ctx: typer.Context,
                percent: Annotated[float | None, typer.Option(min=0, max=100, help="Share of projects.")] = None,
                allow: Annotated[list[str] | None, typer.Option(help="Beta project (repeatable; replaces the list).")] = None,
                contact: Annotated[str | None, typer.Option(help="Whom denied projects should ask.")] = None) -> None:
    """Change the rollout (admin key); every service applies it within seconds."""
    state = _state(ctx)
    c = state.get_client().insights.set_rollout(percent=percent, allowed_projects=allow, contact=contact)
    if state.json:
        render.print_json(c)
    else:
        state.out.print(f"[green]✓[/] {c.rollout_percent:g}% plus {len(c.allowed_projects)} beta projects "
                        f"(revision {c.revision})")


@app.command()
def report(ctx: typer.Context) -> None:
    """Models created against the target, the funnel and satisfaction (admin key)."""
    state = _state(ctx)
    r = state.get_client().insights.success_report()
    if state.json:
        render.print_json(r)
        return
    state.out.print(f"Models created: [bold]{r.models_created}[/] of {r.models_target}")
    for f in r.funnel:
        state.out.print(f"  {f.step:>2} {f.projects:6d} projects  drop-off {f.drop_off:.0%}")
    for s in r.satisfaction:
        state.out.print(f"  {render.escape(s.group)}: {s.mean_overall:.2f}/5 from {s.responses} answers, "
                        f"{s.skips} skipped")
