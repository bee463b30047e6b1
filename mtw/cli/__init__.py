"""The ``mtw`` command line, built on the SDK. ``main(argv)`` runs it in-process;
``app`` is the typer application (for ``typer.testing.CliRunner``)."""

from mtw.cli.app import State, app, main

__all__ = ["State", "app", "main"]
