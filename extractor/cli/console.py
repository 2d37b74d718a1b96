"""Terminal rendering: rich progress bars and tables on stderr/stdout. Only the CLI imports this."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TextIO, cast

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table
from rich.text import Text

from extractor.names import escape_controls
from extractor.redaction import redact_text


class RedactingStream:
    """sys.stdout or sys.stderr as it is at each write (tests swap them), with every secret masked on the way."""

    def __init__(self, name: str):
        self._name = name

    @property
    def stream(self) -> Any:
        return getattr(sys, self._name)

    def write(self, text: str) -> int:
        return self.stream.write(redact_text(text))

    def flush(self) -> None:
        self.stream.flush()

    def isatty(self) -> bool:
        return bool(getattr(self.stream, "isatty", lambda: False)())

    def fileno(self) -> int:
        return self.stream.fileno()

    @property
    def encoding(self) -> str:
        return getattr(self.stream, "encoding", None) or "utf-8"


stderr = RedactingStream("stderr")
stdout = RedactingStream("stdout")
# Talk (progress, errors) goes to stderr; data (tables, JSON) to stdout. No colour when not a TTY.
err = Console(file=cast(TextIO, stderr), highlight=False)
# Off a terminal (cron logs, pipes) tables are not squeezed to 80 columns.
out = Console(file=cast(TextIO, stdout), highlight=False, soft_wrap=True, width=None if sys.stdout.isatty() else 200)


class RichProgress:
    """One progress bar per stage, with documents/s and tokens/s where the stage reports tokens."""

    def __init__(self) -> None:
        # Live bars only on a terminal; under cron each stage leaves one plain line instead.
        self.enabled = err.is_terminal

    @contextmanager
    def stage(self, name: str, total: int | None) -> Iterator[Callable[..., None]]:
        if not self.enabled:
            start = time.monotonic()
            yield lambda *a, **k: None
            err.print(f"[dim]{name:<8}[/] done in {time.monotonic() - start:.1f}s")
            return
        columns = [
            SpinnerColumn(),
            TextColumn(f"[bold]{name:<8}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[rate]}"),
            TimeElapsedColumn(),
            TextColumn("eta"),
            TimeRemainingColumn(),
        ]
        with Progress(*columns, console=err, transient=False) as bar:
            task = bar.add_task(name, total=total, rate="")
            start = time.monotonic()
            tokens = 0

            def tick(event: Any = None, *_: Any, **__: Any) -> None:
                nonlocal tokens
                tokens += int(getattr(event, "completion_tokens", 0) or 0)
                done = bar.tasks[0].completed + 1
                elapsed = max(time.monotonic() - start, 1e-6)
                rate = f"{done / elapsed:.2f} docs/s" + (f" · {tokens / elapsed:.0f} tok/s" if tokens else "")
                bar.update(task, advance=1, rate=rate)

            yield tick
            if total is None:
                bar.update(task, total=bar.tasks[0].completed or 1, completed=bar.tasks[0].completed or 1)


def one_line(text: str) -> str:
    """Control characters (a newline in a file name) escaped, so one message is always one line."""
    return escape_controls(text)


def print_error(message: str) -> None:
    # The message is plain text: square brackets in it (`[gate]`, a path) must not be read as markup.
    err.print(Text.assemble(("Error:", "bold red"), " ", one_line(message)), highlight=False, soft_wrap=True)


def notice(message: str) -> None:
    """Something the user should know while a stage runs (the local server went away, came back): one stderr line."""
    err.print(Text.assemble(("note:", "yellow"), " ", message), highlight=False, soft_wrap=True)


def run_summary_table(report: dict[str, Any]) -> Table:
    prep, col, ver, com, tok = (report.get(k) or {} for k in ("prepare", "collect", "verify", "commit", "tokens"))
    ents = ver.get("entities", {})
    table = Table(title=f"extractor run · job {report['job_id']}", show_header=True, header_style="bold")
    table.add_column("what")
    table.add_column("count", justify="right")
    rows = [
        ("documents", prep.get("documents", 0)),
        ("documents skipped", len(prep.get("skipped", []))),
        ("requests", prep.get("requests", 0)),
        ("answers valid against the schema", col.get("ok", 0)),
        ("answers failed", sum(v for k, v in col.items() if k != "ok")),
        ("entities grounded", ents.get("grounded", 0)),
        ("entities fuzzy", ents.get("fuzzy", 0)),
        ("entities leaked", ents.get("leaked", 0)),
        ("entities ungrounded", ents.get("ungrounded", 0)),
        ("documents clean", ver.get("clean", 0)),
        ("documents quarantined", ver.get("quarantined", 0)),
        ("nodes committed", com.get("nodes", 0)),
        ("relationships committed", com.get("relationships", 0)),
        ("tokens (prompt + completion)", f"{tok.get('prompt', 0)} + {tok.get('completion', 0)}"),
        ("seconds", f"{report.get('seconds', 0):.1f}"),
    ]
    for name, value in rows:
        table.add_row(name, str(value))
    return table


def key_value_table(title: str, data: dict[str, Any]) -> Table:
    table = Table(title=title, show_header=False)
    table.add_column("key", style="bold")
    table.add_column("value")
    for key, value in data.items():
        table.add_row(str(key), value if isinstance(value, str) else _compact(value))
    return table


def rows_table(title: str, columns: list[str], rows: list[list[Any]]) -> Table:
    table = Table(title=title, header_style="bold")
    for col in columns:
        table.add_column(col)
    for row in rows:
        table.add_row(*[_compact(v) for v in row])
    return table


def _compact(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, dict):
        return ", ".join(f"{k}={_compact(v)}" for k, v in value.items())
    if isinstance(value, list):
        return ", ".join(_compact(v) for v in value) if len(value) <= 5 else f"{len(value)} items"
    return "" if value is None else str(value)


def is_tty() -> bool:
    return sys.stderr.isatty()
