"""The one table-and-JSON writer of the benchmarks: an aligned text table and a JSON file written
atomically (`jaxgpt.files`), plus what every result records about the machine.

A `Table` is a list of `Column`s of fixed width, so a long benchmark can print its header first
and each row as it is measured (`Table.header`, `Table.line`); `emit` prints a whole table and
writes the JSON at the end.
"""

from __future__ import annotations

import dataclasses
import os
import platform
from typing import Any, Callable, Iterable, Sequence

from jaxgpt import files


@dataclasses.dataclass(frozen=True)
class Column:
  """One column: a header, the row's key (or a function of the row), a format spec for the
  value (`format(value, fmt)`; None prints as "-") and its width, right-aligned unless `left`."""
  header: str
  key: str | Callable[[dict], Any]
  fmt: str = ""
  width: int = 0  # 0: the header's length + 2
  left: bool = False

  def cell(self, row: dict) -> str:
    value = self.key(row) if callable(self.key) else row.get(self.key)
    return "-" if value is None else format(value, self.fmt)

  def pad(self, text: str) -> str:
    width = self.width or len(self.header) + 2
    return f"{text:<{width}}" if self.left else f"{text:>{width}}"


class Table:
  """Fixed-width columns: `header()`, `line(row)`, or `render(rows)` for both."""

  def __init__(self, *columns: Column):
    self.columns = columns

  def header(self) -> str:
    return " ".join(c.pad(c.header) for c in self.columns).rstrip()

  def line(self, row: dict) -> str:
    return " ".join(c.pad(c.cell(row)) for c in self.columns).rstrip()

  def render(self, rows: Iterable[dict]) -> str:
    return "\n".join([self.header(), *(self.line(r) for r in rows)])


def write_json(out: str | None, result: dict) -> None:
  """`result` as JSON at `out` (folders created, written atomically); nothing when `out` is
  None or empty."""
  if out:
    files.atomic_write_json(out, result)


def emit(result: dict, out: str | None, table: Table | None = None,
         rows: Sequence[dict] = (), title: str | None = None) -> None:
  """Prints `title` and `table` over `rows` (either may be absent), then writes `result` to
  `out` as JSON (when given) and says so."""
  if title:
    print(title)
  if table is not None:
    print(table.render(rows), flush=True)
  if out:
    write_json(out, result)
    print(f"wrote {out}")


def machine() -> str:
  """The machine in a few words, as every result records it: "x86_64 2 cpus"."""
  return f"{platform.machine()} {os.cpu_count()} cpus"
