"""Rich rendering of MTW resources and errors, and their ``--json`` form."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from datetime import UTC
from typing import Any

from google.protobuf import json_format
from google.protobuf.message import Message
from rich import box
from rich.console import Console, Group
from rich.markup import escape
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from mtw.client.names import dataset_id, short_version
from mtw.common.v1 import task_pb2
from mtw.dataset.v1 import dataset_version_pb2 as ver
from mtw.dataset.v1 import quality_report_pb2 as qr
from mtw.errors import InvalidArgument, MtwApiError, Unauthenticated, Unavailable

# -- plain values -----------------------------------------------------------------


def human_bytes(n: float | None) -> str:
    if n is None:
        return "?"
    value = float(n)
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(value) < 1000 or unit == "TB":
            return f"{int(value)} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    return f"{value:.1f} TB"  # pragma: no cover


def when(ts: Any) -> str:
    """A protobuf Timestamp as local ``YYYY-MM-DD HH:MM``; empty when unset."""
    if ts is None or (ts.seconds == 0 and ts.nanos == 0):
        return ""
    return ts.ToDatetime(tzinfo=UTC).astimezone().strftime("%Y-%m-%d %H:%M")


def task_label(task: int) -> str:
    return {
        task_pb2.TASK_SEQUENCE_CLASSIFICATION: "classification",
        task_pb2.TASK_CAUSAL_LM: "causal-lm",
        task_pb2.TASK_CHAT_SFT: "chat-sft",
    }.get(task, "—")


def format_label(fmt: int) -> str:
    if fmt == ver.DATA_FORMAT_UNSPECIFIED:
        return "—"
    return ver.DataFormat.Name(fmt).removeprefix("DATA_FORMAT_").lower()


def pii_label(kind: int) -> str:
    try:
        return qr.PiiKind.Name(kind).removeprefix("PII_KIND_").replace("_", " ").lower()
    except ValueError:
        return str(kind)


def bar(value: float, maximum: float, width: int = 30) -> str:
    """A horizontal bar of ``value/maximum`` in eighth-block resolution."""
    if maximum <= 0 or value <= 0:
        return ""
    eighths = max(1, round(width * 8 * value / maximum))
    full, rest = divmod(eighths, 8)
    return "█" * full + ("", "▏", "▎", "▍", "▌", "▋", "▊", "▉")[rest]


def field_label(field: str) -> str:
    """``line:12:label`` → ``line 12, field 'label'``; ``line:12`` → ``line 12``;
    ``file:label`` (a whole-file problem) → ``field 'label'``; ``file`` → ``file``."""
    parts = field.split(":")
    if parts[0] == "line" and len(parts) >= 2 and parts[1].isdigit():
        text = f"line {parts[1]}"
        if len(parts) > 2 and parts[2]:
            text += f", field '{':'.join(parts[2:])}'"
        return text
    if parts[0] == "file":
        return f"field '{':'.join(parts[1:])}'" if len(parts) > 1 else "file"
    return f"field '{field}'" if field else "request"


def violation_text(field: str, description: str) -> str:
    """``line 3, field 'label': the field is empty``, without repeating a location the
    description already starts with (the dataset service names it in both)."""
    where = field_label(field)
    return description if description.startswith(where) else f"{where}: {description}"


# -- JSON -------------------------------------------------------------------------


def to_jsonable(value: Any) -> Any:
    if isinstance(value, Message):
        return json_format.MessageToDict(value)
    if isinstance(value, dict):
        return {k: to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_jsonable(v) for v in value]
    if hasattr(value, "to_dict"):
        return value.to_dict()
    return value


def print_json(value: Any) -> None:
    print(json.dumps(to_jsonable(value), indent=2, ensure_ascii=False))


# -- errors -----------------------------------------------------------------------


def render_error(console: Console, error: BaseException, endpoint: str = "") -> None:
    console.print(f"[bold red]Error:[/] {escape(str(error))}")
    if isinstance(error, InvalidArgument):
        for v in error.violations:
            console.print(f"  [red]•[/] {escape(violation_text(v.field, v.description))}")
        total = max(error.total_errors, len(error.violations))
        if total > len(error.violations):
            console.print(
                f"  [red]… and {total - len(error.violations)} more ({total} problems in total)[/]"
            )
        elif total:
            console.print(f"  [dim]{total} problem{'s' if total != 1 else ''} in total[/]")
    elif isinstance(error, Unauthenticated):
        console.print("[dim]Check --api-key / MTW_API_KEY; `make run` prints a development key.[/]")
    elif isinstance(error, Unavailable):
        where = f" at {endpoint}" if endpoint else ""
        console.print(
            f"[dim]Is the service running{escape(where)}? `make run` starts it; "
            "--endpoint or MTW_ENDPOINT point elsewhere.[/]"
        )
    elif isinstance(error, MtwApiError) and error.reason:
        console.print(f"[dim]reason: {escape(error.reason)}[/]")


# -- datasets ---------------------------------------------------------------------


def _labels(labels: Any) -> str:
    return ", ".join(f"{k}={v}" for k, v in sorted(labels.items()))


def datasets_table(datasets: Iterable[Any]) -> Table:
    table = Table(box=box.SIMPLE_HEAD)
    for col in ("Dataset", "Display name", "Versions", "Latest", "Size", "Updated", "Labels"):
        table.add_column(col, justify="right" if col in ("Versions", "Size") else "left")
    for d in datasets:
        table.add_row(
            f"[bold]{escape(dataset_id(d.name))}[/]",
            escape(d.display_name),
            str(d.version_count),
            escape(short_version(d.latest_version)) if d.latest_version else "—",
            human_bytes(d.size_bytes),
            when(d.update_time),
            escape(_labels(d.labels)),
        )
    return table


def dataset_panel(d: Any) -> Panel:
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="dim")
    grid.add_column()
    grid.add_row("Name", escape(d.name))
    if d.display_name:
        grid.add_row("Display name", escape(d.display_name))
    if d.description:
        grid.add_row("Description", escape(d.description))
    if d.labels:
        grid.add_row("Labels", escape(_labels(d.labels)))
    grid.add_row("Versions", str(d.version_count))
    if d.latest_version:
        grid.add_row("Latest", escape(short_version(d.latest_version)))
    grid.add_row("Size", human_bytes(d.size_bytes))
    grid.add_row("Created", when(d.create_time))
    grid.add_row("Updated", when(d.update_time))
    return Panel(grid, title=f"[bold]{escape(dataset_id(d.name))}[/]", expand=False)


def _splits(v: Any) -> str:
    return " / ".join(f"{s.name} {s.row_count:,}" for s in v.splits)


def _warning_count(v: Any) -> str:
    n = sum(1 for w in v.quality_report.warnings if w.severity == qr.SEVERITY_WARNING)
    return f"[yellow]{n}[/]" if n else "0"


def versions_table(versions: Iterable[Any]) -> Table:
    table = Table(box=box.SIMPLE_HEAD)
    for col in ("Version", "Task", "Format", "Rows", "Splits", "Size", "Warnings", "Created"):
        table.add_column(col, justify="right" if col in ("Rows", "Size", "Warnings") else "left")
    for v in versions:
        table.add_row(
            f"[bold]{escape(short_version(v.name))}[/]",
            task_label(v.task),
            format_label(v.format),
            f"{v.quality_report.row_count:,}",
            escape(_splits(v)),
            human_bytes(v.size_bytes),
            _warning_count(v),
            when(v.create_time),
        )
    return table


def version_summary(v: Any) -> Text:
    rows = v.quality_report.row_count
    text = Text.assemble(
        ("✓ ", "bold green"),
        (short_version(v.name), "bold"),
        f" — {rows:,} rows",
    )
    if v.splits:
        text.append(f" ({_splits(v)})")
    text.append(
        f", task {task_label(v.task)}, format {format_label(v.format)}, {human_bytes(v.size_bytes)}"
    )
    return text


def preview_table(page: Any, offset: int = 0) -> Table:
    table = Table(box=box.SIMPLE_HEAD, show_lines=False)
    table.add_column("#", justify="right", style="dim")
    for col in page.columns:
        table.add_column(escape(col), overflow="fold")
    for i, row in enumerate(page.rows, start=offset + 1):
        table.add_row(str(i), *(escape(_cell(row.get(c))) for c in page.columns))
    return table


def _cell(value: Any, limit: int = 300) -> str:
    if value is None:
        return ""
    if isinstance(value, list) and value and all(isinstance(m, dict) for m in value):
        text = "\n".join(f"{m.get('role', '?')}: {m.get('content', '')}" for m in value)
    elif isinstance(value, (dict, list)):
        text = json.dumps(value, ensure_ascii=False)
    else:
        text = str(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


# -- quality report ---------------------------------------------------------------


def _histogram(title: str, h: Any) -> Group | None:
    if not h.buckets and not h.rows_measured:
        return None
    stats = Text(
        f"min {h.min:,} · p50 {h.p50:,} · mean {h.mean:,.1f} · p95 {h.p95:,} · max {h.max:,}"
        f" · {h.rows_measured:,} rows measured",
        style="dim",
    )
    table = Table(box=None, show_header=False, padding=(0, 1))
    table.add_column(justify="right", style="dim")
    table.add_column(style="cyan")
    table.add_column(justify="right")
    peak = max((b.count for b in h.buckets), default=0)
    for b in h.buckets:
        table.add_row(f"{b.lower:,}–{b.upper:,}", bar(b.count, peak), f"{b.count:,}")
    return Group(Text(title, style="bold"), stats, table)


def _severity(sev: int) -> tuple[str, str]:
    if sev == qr.SEVERITY_WARNING:
        return "⚠ warning", "yellow"
    if sev == qr.SEVERITY_INFO:
        return "ℹ info", "cyan"
    return "·", "dim"


def report_renderables(v: Any) -> list[Any]:
    """Everything about a version: overview, columns, labels, lengths, duplicates,
    PII and warnings, in that order."""
    r = v.quality_report
    out: list[Any] = []

    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="dim")
    grid.add_column()
    grid.add_row("Version", escape(v.name))
    grid.add_row("Task", task_label(v.task))
    grid.add_row("Format", format_label(v.format))
    if v.options.file_name:
        grid.add_row("File", escape(v.options.file_name))
    grid.add_row(
        "Size", f"{human_bytes(v.size_bytes)}" + (f"  sha256 {v.sha256[:16]}…" if v.sha256 else "")
    )
    grid.add_row("Rows", f"{r.row_count:,} in {r.column_count} source column(s)")
    if v.splits:
        grid.add_row("Splits", escape(_splits(v)))
    if v.columns:
        grid.add_row("Canonical columns", escape(", ".join(v.columns)))
    mapping = v.options.column_mapping
    mapped = [
        f"{f.name} ← {getattr(mapping, f.name)}"
        for f in mapping.DESCRIPTOR.fields
        if getattr(mapping, f.name)
    ]
    if mapped:
        grid.add_row("Column mapping", escape(", ".join(mapped)))
    if r.had_byte_order_mark:
        grid.add_row("Encoding", "UTF-8 with byte-order mark")
    if v.create_time.seconds:
        grid.add_row(
            "Created", when(v.create_time) + (f" by {escape(v.creator)}" if v.creator else "")
        )
    out.append(Panel(grid, title=f"[bold]{escape(short_version(v.name))}[/]", expand=False))

    if r.columns:
        cols = Table(title="Source columns", title_justify="left", box=box.SIMPLE_HEAD)
        cols.add_column("Column")
        cols.add_column("Used as")
        cols.add_column("Empty", justify="right")
        for c in r.columns:
            empty = f"[yellow]{c.empty_count:,}[/]" if c.empty_count else "0"
            cols.add_row(escape(c.name), escape(c.mapped_to) or "[dim]unused[/]", empty)
        out.append(cols)

    if r.label_distribution:
        labels = Table(title="Label distribution", title_justify="left", box=box.SIMPLE_HEAD)
        labels.add_column("Label")
        labels.add_column("", style="magenta")
        labels.add_column("Rows", justify="right")
        labels.add_column("Share", justify="right")
        split_names = _split_names(r.label_distribution)
        for name in split_names:
            labels.add_column(name, justify="right", style="dim")
        peak = max(lc.count for lc in r.label_distribution)
        for lc in r.label_distribution:
            labels.add_row(
                escape(lc.label),
                bar(lc.count, peak, 24),
                f"{lc.count:,}",
                f"{lc.fraction:.1%}",
                *(f"{lc.split_counts.get(s, 0):,}" for s in split_names),
            )
        out.append(labels)

    for title, h, present in (
        ("Text length (characters)", r.char_length, r.HasField("char_length")),
        (
            f"Text length (tokens, {r.tokenizer_model})"
            if r.tokenizer_model
            else "Text length (tokens)",
            r.token_length,
            r.HasField("token_length"),
        ),
    ):
        if present and (group := _histogram(title, h)) is not None:
            out.append(group)

    dup = Table(title="Duplicates and leakage", title_justify="left", box=box.SIMPLE_HEAD)
    dup.add_column("Check")
    dup.add_column("Rows", justify="right")
    dup.add_column("Share", justify="right")
    for label, n, bad in (
        ("Exact duplicates", r.exact_duplicate_rows, "yellow"),
        ("Near duplicates (incl. exact)", r.near_duplicate_rows, "yellow"),
        ("Text shared across splits (leakage)", r.cross_split_duplicate_rows, "red"),
    ):
        share = f"{n / r.row_count:.1%}" if r.row_count else "—"
        dup.add_row(label, f"[{bad}]{n:,}[/]" if n else "0", share)
    out.append(dup)

    if r.pii:
        pii = Table(title="Personal data found", title_justify="left", box=box.SIMPLE_HEAD)
        pii.add_column("Kind")
        pii.add_column("Matches", justify="right")
        pii.add_column("Rows", justify="right")
        pii.add_column("Example rows")
        pii.add_column("Redacted")
        for f in r.pii:
            pii.add_row(
                pii_label(f.kind),
                f"{f.match_count:,}",
                f"{f.row_count:,}",
                ", ".join(str(x) for x in f.example_rows),
                "[green]yes[/]" if f.redacted else "[yellow]no[/]",
            )
        out.append(pii)

    if r.warnings:
        warn = Table(title="Findings", title_justify="left", box=box.SIMPLE_HEAD)
        warn.add_column("Severity")
        warn.add_column("Code", style="dim")
        warn.add_column("Finding")
        warn.add_column("Example rows", style="dim")
        for w in r.warnings:
            label, style = _severity(w.severity)
            warn.add_row(
                f"[{style}]{label}[/]",
                escape(w.code),
                f"[{style}]{escape(w.message)}[/]",
                ", ".join(str(x) for x in w.example_rows),
            )
        out.append(warn)
    else:
        out.append(Text("✓ No findings: the data looks ready to train on.", style="green"))
    return out


def _split_names(dist: Sequence[Any]) -> list[str]:
    order = ["train", "validation", "test"]
    seen = {k for lc in dist for k in lc.split_counts}
    return [s for s in order if s in seen] + sorted(seen - set(order))
