"""``mtw datasets …``: create, upload (with a progress bar), list, show, preview, report,
delete. VERSION accepts ``DATASET@N``, ``DATASET/versions/N`` or a full name; read-only
commands also take a bare ``DATASET`` for its latest version."""

from __future__ import annotations

import re
import sys
import time
from enum import Enum
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

from mtw.cli import render
from mtw.cli.app import State
from mtw.client.ingest import build_ingest_options
from mtw.client.names import LATEST
from mtw.dataset.v1 import dataset_version_pb2 as ver
from mtw.errors import AlreadyExists, ConfigurationError, NotFound

_DATASET_REF = re.compile(r"(projects/[A-Za-z0-9_-]+/datasets/)?[A-Za-z0-9][A-Za-z0-9_-]*")

app = typer.Typer(no_args_is_help=True, rich_markup_mode="rich")


class Format(str, Enum):
    auto = "auto"
    csv = "csv"
    tsv = "tsv"
    jsonl = "jsonl"
    json = "json"
    parquet = "parquet"
    text = "text"


class Task(str, Enum):
    auto = "auto"
    classification = "classification"
    causal_lm = "causal-lm"
    chat_sft = "chat-sft"


def _state(ctx: typer.Context) -> State:
    return ctx.ensure_object(State)


def parse_labels(values: list[str] | None) -> dict[str, str]:
    """``["team=nlp", "src=web"]`` → ``{"team": "nlp", "src": "web"}``."""
    labels: dict[str, str] = {}
    for item in values or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise typer.BadParameter(f"expected KEY=VALUE, got {item!r}", param_hint="--label")
        labels[key.strip()] = value.strip()
    return labels


def version_ref(value: str, *, allow_latest: bool) -> str:
    """A bare dataset id means its latest version, for commands that only read."""
    if "@" in value or "/versions/" in value:
        return value
    if allow_latest and _DATASET_REF.fullmatch(value):
        return f"{value}@{LATEST}"
    raise typer.BadParameter(
        f"{value!r} is not a version: use DATASET@N, DATASET/versions/N or a full name",
        param_hint="VERSION",
    )


def ingest_options_from_flags(
    *,
    file_name: str | None = None,
    format: Format | str = Format.auto,
    task: Task | str = Task.auto,
    text_column: str | None = None,
    label_column: str | None = None,
    messages_column: str | None = None,
    prompt_column: str | None = None,
    input_column: str | None = None,
    response_column: str | None = None,
    validation_fraction: float | None = None,
    test_fraction: float | None = None,
    seed: int | None = None,
    split_column: str | None = None,
    group_column: str | None = None,
    stratify: bool | None = None,
    redact_pii: bool = False,
    tokenizer: str | None = None,
) -> ver.IngestOptions:
    """The upload flags as ``IngestOptions`` (flags not given stay unset)."""
    return build_ingest_options(
        file_name=file_name,
        format=getattr(format, "value", format),
        task=getattr(task, "value", task),
        column_mapping={
            "text": text_column,
            "label": label_column,
            "messages": messages_column,
            "prompt": prompt_column,
            "input": input_column,
            "response": response_column,
        },
        split={
            "validation_fraction": validation_fraction,
            "test_fraction": test_fraction,
            "seed": seed,
            "split_column": split_column,
            "group_column": group_column,
            "stratify": stratify,
        },
        pii_handling="redact" if redact_pii else None,
        tokenizer_model=tokenizer,
    )


# -- datasets ---------------------------------------------------------------------


@app.command()
def create(
    ctx: typer.Context,
    dataset_id: Annotated[str, typer.Argument(metavar="ID", help="Dataset id (a-z, 0-9, -).")],
    display_name: Annotated[str, typer.Option(help="Human-readable name.")] = "",
    description: Annotated[str, typer.Option(help="Free-text description.")] = "",
    label: Annotated[
        list[str] | None, typer.Option("--label", "-l", help="KEY=VALUE (repeatable).")
    ] = None,
) -> None:
    """Create an empty dataset."""
    state = _state(ctx)
    labels = parse_labels(label)
    d = state.get_client().datasets.create(
        dataset_id, display_name=display_name, description=description, labels=labels
    )
    if state.json:
        render.print_json(d)
    else:
        state.out.print(f"[green]✓[/] Created dataset [bold]{render.escape(d.name)}[/]")


@app.command("list")
def list_(
    ctx: typer.Context,
    filter: Annotated[
        str, typer.Option(help='e.g. display_name:"reviews" AND labels.team="nlp"')
    ] = "",
    limit: Annotated[int | None, typer.Option(help="Show at most this many.", min=1)] = None,
) -> None:
    """List the project's datasets, newest first."""
    state = _state(ctx)
    datasets = list(state.get_client().datasets.list(filter=filter, limit=limit))
    if state.json:
        render.print_json(datasets)
    elif not datasets:
        state.out.print("No datasets yet. Create one with [bold]mtw datasets create ID[/].")
    else:
        state.out.print(render.datasets_table(datasets))


@app.command()
def show(
    ctx: typer.Context,
    dataset: Annotated[str, typer.Argument(metavar="DATASET")],
) -> None:
    """Show a dataset and its versions."""
    state = _state(ctx)
    client = state.get_client()
    d = client.datasets.get(dataset)
    versions = list(client.datasets.versions(d.name))
    if state.json:
        render.print_json({"dataset": d, "versions": versions})
        return
    state.out.print(render.dataset_panel(d))
    if versions:
        state.out.print(render.versions_table(versions))
    else:
        state.out.print(f"No versions yet: [bold]mtw datasets upload {d.name} FILE[/]")


@app.command()
def update(
    ctx: typer.Context,
    dataset: Annotated[str, typer.Argument(metavar="DATASET")],
    display_name: Annotated[str | None, typer.Option(help="New display name.")] = None,
    description: Annotated[str | None, typer.Option(help="New description.")] = None,
    label: Annotated[
        list[str] | None,
        typer.Option("--label", "-l", help="KEY=VALUE; replaces all labels (repeatable)."),
    ] = None,
) -> None:
    """Change a dataset's display name, description or labels."""
    state = _state(ctx)
    labels = parse_labels(label) if label is not None else None
    d = state.get_client().datasets.update(
        dataset, display_name=display_name, description=description, labels=labels
    )
    if state.json:
        render.print_json(d)
    else:
        state.out.print(render.dataset_panel(d))


@app.command()
def versions(
    ctx: typer.Context,
    dataset: Annotated[str, typer.Argument(metavar="DATASET")],
    limit: Annotated[int | None, typer.Option(help="Show at most this many.", min=1)] = None,
) -> None:
    """List a dataset's versions, newest first."""
    state = _state(ctx)
    items = list(state.get_client().datasets.versions(dataset, limit=limit))
    if state.json:
        render.print_json(items)
    elif not items:
        state.out.print("No versions yet.")
    else:
        state.out.print(render.versions_table(items))


@app.command()
def delete(
    ctx: typer.Context,
    dataset: Annotated[str, typer.Argument(metavar="DATASET")],
    force: Annotated[
        bool, typer.Option("--force", help="Also delete every version and its bytes.")
    ] = False,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
) -> None:
    """Delete a dataset (with --force, its versions too)."""
    state = _state(ctx)
    if not yes:
        what = "and ALL its versions " if force else ""
        if not sys.stdin.isatty():
            raise typer.BadParameter("pass --yes to delete without a prompt", param_hint="--yes")
        typer.confirm(f"Delete dataset {dataset} {what}for good?", abort=True)
    state.get_client().datasets.delete(dataset, force=force)
    if state.json:
        render.print_json({"deleted": dataset})
    else:
        state.out.print(f"[green]✓[/] Deleted dataset [bold]{render.escape(dataset)}[/]")


# -- versions ---------------------------------------------------------------------


@app.command()
def upload(
    ctx: typer.Context,
    dataset: Annotated[str, typer.Argument(metavar="DATASET")],
    file: Annotated[
        str, typer.Argument(metavar="FILE", help="File to upload, or - for standard input.")
    ],
    format: Annotated[Format, typer.Option(help="File layout.")] = Format.auto,
    task: Annotated[Task, typer.Option(help="What the data trains.")] = Task.auto,
    text_column: Annotated[str | None, typer.Option(help="Column with the text.")] = None,
    label_column: Annotated[str | None, typer.Option(help="Column with the label.")] = None,
    messages_column: Annotated[str | None, typer.Option(help="Column with chat messages.")] = None,
    prompt_column: Annotated[
        str | None, typer.Option(help="Column with the instruction/prompt.")
    ] = None,
    input_column: Annotated[str | None, typer.Option(help="Column with extra input.")] = None,
    response_column: Annotated[
        str | None, typer.Option(help="Column with the expected answer.")
    ] = None,
    validation_fraction: Annotated[
        float | None, typer.Option(min=0.0, max=0.5, help="Share for validation (default 0.1).")
    ] = None,
    test_fraction: Annotated[
        float | None, typer.Option(min=0.0, max=0.5, help="Share for test (default 0.1).")
    ] = None,
    seed: Annotated[int | None, typer.Option(help="Split seed (default 42).")] = None,
    split_column: Annotated[
        str | None, typer.Option(help="Column naming each row's split.")
    ] = None,
    group_column: Annotated[
        str | None, typer.Option(help="Rows sharing this column stay in one split.")
    ] = None,
    stratify: Annotated[
        bool | None,
        typer.Option("--stratify/--no-stratify", help="Keep class shares equal across splits."),
    ] = None,
    redact_pii: Annotated[
        bool, typer.Option("--redact-pii", help="Replace personal data with placeholders.")
    ] = False,
    tokenizer: Annotated[
        str | None,
        typer.Option(metavar="MODEL", help="Base model whose tokenizer measures token lengths."),
    ] = None,
    create: Annotated[
        bool, typer.Option("--create", help="Create the dataset if it does not exist.")
    ] = False,
    chunk_size: Annotated[
        int, typer.Option(help="Bytes per message.", min=1, max=4 * 1024 * 1024, hidden=True)
    ] = 1024 * 1024,
) -> None:
    """Upload a file as a new version; prints the version and its quality report."""
    state = _state(ctx)
    client = state.get_client()
    source: Any
    if file == "-":
        source, file_name = sys.stdin.buffer, None
    else:
        path = Path(file)
        if not path.is_file():
            raise ConfigurationError(f"no such file: {file}")
        source, file_name = path, path.name
    options = ingest_options_from_flags(
        file_name=file_name,
        format=format,
        task=task,
        text_column=text_column,
        label_column=label_column,
        messages_column=messages_column,
        prompt_column=prompt_column,
        input_column=input_column,
        response_column=response_column,
        validation_fraction=validation_fraction,
        test_fraction=test_fraction,
        seed=seed,
        split_column=split_column,
        group_column=group_column,
        stratify=stratify,
        redact_pii=redact_pii,
        tokenizer=tokenizer,
    )
    if create:
        _ensure_dataset(state, client, dataset)

    started = time.monotonic()
    show_bar = not state.json and state.err.is_terminal
    progress = Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
        console=state.err,
        disable=not show_bar,
    )
    label = file_name or "stdin"
    task_id = progress.add_task(f"Uploading {label}", total=None)
    sent = 0

    def on_progress(bytes_sent: int, total: int | None) -> None:
        nonlocal sent
        sent = bytes_sent
        progress.update(task_id, completed=bytes_sent, total=total)
        if total is not None and bytes_sent >= total:
            progress.update(task_id, description=f"Checking {label}")

    with progress:
        version = client.datasets.upload(
            dataset, source, options=options, chunk_size=chunk_size, progress=on_progress
        )
    elapsed = max(time.monotonic() - started, 1e-6)
    if state.json:
        render.print_json(version)
        return
    state.err.print(
        f"[dim]Sent {render.human_bytes(sent)} in {elapsed:.1f} s "
        f"({render.human_bytes(sent / elapsed)}/s)[/]"
    )
    state.out.print(render.version_summary(version))
    for item in render.report_renderables(version):
        state.out.print(item)


def _ensure_dataset(state: State, client: Any, dataset: str) -> None:
    try:
        client.datasets.get(dataset)
    except NotFound:
        try:
            client.datasets.create(dataset)
            if not state.json:
                state.err.print(f"[green]✓[/] Created dataset [bold]{render.escape(dataset)}[/]")
        except AlreadyExists:  # created in between by someone else: fine
            pass


@app.command()
def report(
    ctx: typer.Context,
    version: Annotated[str, typer.Argument(metavar="VERSION")],
) -> None:
    """Show a version's quality report."""
    state = _state(ctx)
    v = state.get_client().datasets.get_version(version_ref(version, allow_latest=True))
    if state.json:
        render.print_json(v)
        return
    for item in render.report_renderables(v):
        state.out.print(item)


@app.command()
def preview(
    ctx: typer.Context,
    version: Annotated[str, typer.Argument(metavar="VERSION")],
    split: Annotated[str, typer.Option(help="train, validation or test.")] = "train",
    rows: Annotated[int, typer.Option(help="Rows per page.", min=1, max=500)] = 20,
    page_token: Annotated[str, typer.Option(help="Token printed by a previous page.")] = "",
) -> None:
    """Show canonical rows of one split."""
    state = _state(ctx)
    page = state.get_client().datasets.preview(
        version_ref(version, allow_latest=True), split=split, page_size=rows, page_token=page_token
    )
    if state.json:
        render.print_json(page)
        return
    state.out.print(render.preview_table(page))
    footer = f"{len(page.rows)} of {page.total_rows:,} rows in {split}"
    if page.next_page_token:
        footer += f" · next page: --page-token {page.next_page_token}"
    state.out.print(f"[dim]{render.escape(footer)}[/]")


@app.command("delete-version")
def delete_version(
    ctx: typer.Context,
    version: Annotated[str, typer.Argument(metavar="VERSION")],
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Accepted for symmetry.")] = False,
) -> None:
    """Delete one version and its bytes."""
    state = _state(ctx)
    ref = version_ref(version, allow_latest=False)
    state.get_client().datasets.delete_version(ref)
    if state.json:
        render.print_json({"deleted": ref})
    else:
        state.out.print(f"[green]✓[/] Deleted version [bold]{render.escape(ref)}[/]")
