"""`--tasks` on `distill run` and `distill train`: the user's tasks scored on the teacher and the students just
trained (torch), written into summary.json and printed under the run's table.

NOTE: the training pipeline never imports eval (a lower floor reports, a higher one reads): the CLI, above
both, reads the tasks before training (so a bad path fails before any work) and scores them after.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

if TYPE_CHECKING:
    from distill.training.config import RunConfig
    from eval.suite import Task

TASKS_OPTION = click.option(
    "--tasks", multiple=True,
    help="Tasks to score the teacher and every student on once training ends, into summary.json and the final "
    "table: 'default' (a small suite that ships), KIND:PATH (retrieval, classification, clustering, sts) or a "
    "folder of tasks; comma-separated or repeated.",
)  # fmt: skip


def read_tasks(config: RunConfig) -> list[Task]:
    """The run's tasks, read now; corpus vectors are cached in the run's cache folder."""
    if not config.tasks:
        return []
    from eval.encoders import VectorCache
    from eval.report import TASK_VECTORS
    from eval.suite import parse_tasks

    return parse_tasks(config.tasks, VectorCache(Path(config.cache_dir) / TASK_VECTORS))


def score_and_print(run_dir: str | Path, tasks: list[Task], device: str) -> None:
    """Score `tasks` on the finished run, write them into its summary.json, and print their table."""
    from eval.markdown import task_table
    from eval.report import score_run_tasks

    header, rows = task_table(score_run_tasks(run_dir, tasks, device, progress=True))
    click.echo("\ntasks: each score x 100, in brackets its share of the teacher's")
    for line in aligned([header, *rows]):
        click.echo(line)


def aligned(rows: list[list[Any]]) -> list[str]:
    """Rows of cells as text columns, each as wide as its widest cell."""
    widths = [max(len(str(row[i])) for row in rows) for i in range(len(rows[0]))]
    return ["  ".join(str(cell).ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip() for row in rows]
