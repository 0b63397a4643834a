"""How the command shows results: rich tables and progress bars, or JSON for scripts."""

from __future__ import annotations

import dataclasses
import enum
import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table


def plain(value: Any) -> Any:
    """``value`` as JSON-ready data (dataclasses, enums and bytes included)."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return plain(dataclasses.asdict(value))
    if isinstance(value, enum.Enum):
        return value.name
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    if isinstance(value, bytes):
        return value.decode(errors="replace")
    return value


class Output:
    """Writes results as a table (``--format table``) or JSON (``--format json``)."""

    def __init__(self, fmt: str) -> None:
        self.fmt = fmt
        self.console = Console(stderr=False, highlight=False)

    def result(self, title: str, rows: list[dict[str, Any]] | dict[str, Any]) -> None:
        """Print one result: a mapping as two columns, a list of mappings as a table."""
        if self.fmt == "json":
            sys.stdout.write(json.dumps(plain(rows), indent=2, sort_keys=True) + "\n")
            return
        if isinstance(rows, dict):
            table = Table(title=title, show_header=False)
            table.add_column("field", style="bold")
            table.add_column("value")
            for key, value in plain(rows).items():
                table.add_row(str(key), _cell(value))
        else:
            table = Table(title=title)
            columns = list(dict.fromkeys(key for row in rows for key in row))
            for column in columns:
                table.add_column(column)
            for row in plain(rows):
                table.add_row(*(_cell(row.get(column, "")) for column in columns))
        self.console.print(table)

    @contextmanager
    def progress(self, label: str) -> Iterator[Any]:
        """A progress bar fed by the library's progress callback (silent with JSON)."""
        if self.fmt == "json":
            yield lambda instance, percent, step: None
            return
        with Progress(TextColumn("{task.description}"), BarColumn(),
                      TextColumn("{task.percentage:>3.0f}%"), TextColumn("{task.fields[step]}"),
                      TimeElapsedColumn(), console=Console(stderr=True)) as bar:
            task = bar.add_task(label, total=100, step="")

            def callback(instance: Any, percent: int, step: str) -> None:
                bar.update(task, completed=percent, step=step)

            try:
                yield callback
            except BaseException:
                bar.remove_task(task)  # the error line says what happened; no stale bar
                raise
            bar.update(task, completed=100, step="done")


def _cell(value: Any) -> str:
    if isinstance(value, dict | list):
        return json.dumps(value, sort_keys=True)
    return "" if value is None else str(value)
