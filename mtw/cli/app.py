"""The ``mtw`` command: global options, the client, and error handling for every command.

API errors print a red message plus each field violation and exit 1; usage errors exit
2 (click's convention). No tracebacks for anything the user can fix.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Annotated, Any

import click
import typer
from rich.console import Console
from typer.core import TyperGroup

from mtw import __version__
from mtw.client.names import InvalidResourceName
from mtw.errors import ConfigurationError, MtwApiError


@dataclass
class State:
    """What the global options chose; commands reach it as ``ctx.obj``.

    Tests may pass ``obj=State(client=fake)`` to run commands against a fake client.
    """

    endpoint: str | None = None
    api_key: str | None = None
    project: str | None = None
    json: bool = False
    timeout: float | None = None
    client: Any = None
    out: Console = field(default_factory=Console)
    err: Console = field(default_factory=lambda: Console(stderr=True))

    def get_client(self) -> Any:
        if self.client is None:
            import os

            import mtw

            if not (self.api_key or os.environ.get("MTW_API_KEY", "").strip()):
                raise ConfigurationError(
                    "Set MTW_API_KEY or pass --api-key; `make run` prints a development key"
                )

            kwargs: dict[str, Any] = {"project": self.project}
            if self.timeout is not None:
                kwargs["timeout"] = self.timeout
            self.client = mtw.Client(self.endpoint, self.api_key, **kwargs)
        return self.client

    def endpoint_for(self, service: str) -> str:
        config = getattr(self.client, "config", None)
        return config.endpoint_for(service) if config is not None else (self.endpoint or "")


class MtwGroup(TyperGroup):
    """Root group that turns SDK errors into a clear message and an exit code."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except MtwApiError as e:
            self._fail(ctx, e, 1)
        except InvalidResourceName as e:
            self._fail(ctx, e, 2)
        except ConfigurationError as e:
            self._fail(ctx, e, 1)
        except OSError as e:  # a file to upload that cannot be read
            self._fail(ctx, e, 1)

    @staticmethod
    def _fail(ctx: click.Context, error: BaseException, code: int) -> None:
        from mtw.cli.render import render_error

        state = ctx.find_object(State) or State()
        render_error(state.err, error, endpoint=state.endpoint_for("dataset"))
        raise typer.Exit(code)


app = typer.Typer(
    name="mtw",
    cls=MtwGroup,
    help="MTW, the Model Training Wizard: upload data, fine-tune, evaluate, register.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"mtw {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    ctx: typer.Context,
    endpoint: Annotated[
        str | None,
        typer.Option(
            help="Service address host:port (or a bare host: each service on its default "
            "port). Default: MTW_<SERVICE>_ENDPOINT, MTW_ENDPOINT, 127.0.0.1.",
            show_default=False,
        ),
    ] = None,
    api_key: Annotated[
        str | None,
        typer.Option(envvar="MTW_API_KEY", help="API key.", show_default=False),
    ] = None,
    project: Annotated[
        str | None,
        typer.Option(envvar="MTW_PROJECT", help="Project for short names. Default: dev."),
    ] = None,
    json_output: Annotated[
        bool, typer.Option("--json", help="Machine-readable JSON output.")
    ] = False,
    timeout: Annotated[
        float | None, typer.Option(help="Deadline per call in seconds.", min=0.001)
    ] = None,
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="Show the version."),
    ] = False,
) -> None:
    state = ctx.ensure_object(State)
    state.endpoint = endpoint or state.endpoint
    state.api_key = api_key or state.api_key
    state.project = project or state.project
    state.json = json_output or state.json
    state.timeout = timeout if timeout is not None else state.timeout


def _register() -> None:
    from mtw.cli.datasets import app as datasets_app

    app.add_typer(datasets_app, name="datasets", help="Upload and inspect datasets (step 1).")
    from mtw.cli.jobs import app as jobs_app

    app.add_typer(jobs_app, name="jobs", help="Fine-tune a base model on a dataset version (step 2).")
    from mtw.cli.evals import app as evals_app

    app.add_typer(evals_app, name="evals", help="Evaluate models, compare them, fine-tune again (step 3).")
    from mtw.cli.models import app as models_app

    app.add_typer(models_app, name="models", help="Register, alias, download and use trained models (step 4).")
    from mtw.cli.insights import app as insights_app

    app.add_typer(insights_app, name="insights", help="Satisfaction survey, experiment variants, rollout (admin).")


_register()


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI in-process; returns the exit code (``mtw`` calls ``sys.exit`` on it)."""
    args = list(argv) if argv is not None else sys.argv[1:]
    # `--json` is a global option, but people type it after the command too.
    if "--json" in args[1:]:
        args = ["--json", *(a for a in args if a != "--json")]
    try:
        app(args=args, prog_name="mtw")
    except SystemExit as e:
        code = e.code
        if code is None:
            return 0
        return code if isinstance(code, int) else 1
    return 0
