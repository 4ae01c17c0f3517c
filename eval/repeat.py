"""The same run made twice: a fresh clone's `make distill` then `make eval` against the run kept beside the docs.

`compare_reports` sets two reports' tables side by side as the pages print them (eval.markdown): every figure but
a speed must be the same at its printed precision (training and scoring are seeded); a speed moves with the
machine's load, so the pages give both runs' speeds (the `repeat` blocks) as the noise to read them with.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from eval.markdown import fidelity_table, headline_table, model_rows, speed_table

TABLES = {"headline": headline_table, "fidelity": fidelity_table,
          "speed": lambda report: speed_table(model_rows(report))}  # fmt: skip


@dataclass
class Speed:
    table: str
    model: str
    column: str
    kept: str
    again: str


@dataclass
class Comparison:
    compared: int = 0  # figures other than speeds
    differing: list[str] = field(default_factory=list)  # "table, model, column: kept -> again"
    speeds: list[Speed] = field(default_factory=list)


def compare_reports(kept: dict[str, Any], again: dict[str, Any]) -> Comparison:
    """Two reports' tables cell by cell: the figures that differ at printed precision, and every speed."""
    out = Comparison()
    for table, render in TABLES.items():
        old_lines, new_lines = render(kept), render(again)
        header = cells(old_lines[0])
        if header != cells(new_lines[0]) or len(old_lines) != len(new_lines):
            out.differing.append(f"{table}: other columns or rows ({cells(new_lines[0])})")
            continue
        for old_row, new_row in zip(old_lines[2:], new_lines[2:], strict=True):
            model = cells(old_row)[0]
            for column, old, now in zip(header[1:], cells(old_row)[1:], cells(new_row)[1:], strict=True):
                if is_speed(column):
                    out.speeds.append(Speed(table, model, column, old, now))
                    continue
                out.compared += 1
                if old != now:
                    out.differing.append(f"{table}, {model}, {column}: {old} -> {now}")
    return out


def cells(line: str) -> list[str]:
    return [cell.strip() for cell in line.strip().strip("|").split("|")]


def is_speed(column: str) -> bool:
    """A column of a time or a speed, which moves with the machine's load: "speed", "p50 ms", "b32 x"..."""
    return column == "speed" or column.endswith((" ms", " x", "texts/s"))


def ratio(cell: str) -> float | None:
    """263x, 43.6x, 136x (numpy), 4.13 -> the number; - -> None."""
    found = re.match(r"([\d.,]+)", cell)
    return float(found.group(1).replace(",", "")) if found else None


def served_speeds(comparison: Comparison) -> list[tuple[str, str, str, float | None]]:
    """The headline's speed of each model (as served), in both runs, and the second over the first."""
    out = []
    for speed in (s for s in comparison.speeds if s.table == "headline"):
        kept, again = ratio(speed.kept), ratio(speed.again)
        out.append((speed.model, speed.kept, speed.again, again / kept if kept and again else None))
    return out
