"""The task flags: `distill eval`'s --tasks, --mteb and --cache-dir, and `--tasks` on `distill run` and `distill
train`, where the user's tasks are scored on the teacher and the students just trained (torch), written into
summary.json and printed under the run's table.

NOTE: the training pipeline never imports eval (a lower floor reports, a higher one reads): the CLI, above
both, reads the tasks before training (so a bad path fails before any work) and scores them after.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

if TYPE_CHECKING:
    from distill.training.config import RunConfig
    from eval.suite import Task

# NOTE: every kind of task SPEC that `eval.suite.parse_tasks` reads, in the words of both --tasks helps (a test
# checks that each kind is named in both).
TASK_SPECS = (
    "'default' (a small suite that ships), 'collection' (retrieval on the run's own corpus: a sentence of a "
    "held-out passage finds its passage, no labels needed; and the corpus's own queries if it is a BEIR folder), "
    "KIND:PATH (retrieval: a BEIR folder; passages: a .txt of passages, one a line, retrieval with no labels "
    "needed; classification: a folder of train and test files; clustering: a text,label file; sts: a pairs file), "
    "PATH (the kind its layout says, or a folder of several) or 'none'; comma-separated or repeated."
)

TASKS_OPTION = click.option(
    "--tasks", multiple=True, metavar="SPEC",
    help="Tasks to score the teacher and every student on once training ends, into summary.json and the final "
    f"table: {TASK_SPECS}",
)  # fmt: skip


def eval_task_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """`distill eval`'s task flags: --tasks, --mteb and --cache-dir."""
    options = [
        click.option("--tasks", multiple=True, metavar="SPEC",
                     help="Your tasks, scored on the teacher and every model and backend (`make eval` runs "
                     f"'default'): {TASK_SPECS}"),
        click.option("--mteb", multiple=True, metavar="TASK[,TASK...]",
                     help="MTEB tasks by name (needs the mteb extra and their data, downloaded once); MTEB's own "
                     "result files go to RUN/mteb/."),
        click.option("--cache-dir", type=click.Path(file_okay=False),
                     help="Where corpus vectors of retrieval tasks are cached [default: the run's cache folder]."),
    ]  # fmt: skip
    for option in reversed(options):
        func = option(func)
    return func


def read_tasks(config: RunConfig) -> list[Task]:
    """The run's tasks, read now; corpus vectors are cached in the run's cache folder."""
    if not config.tasks:
        return []
    from eval.encoders import VectorCache
    from eval.report import TASK_VECTORS
    from eval.suite import RunCorpus, parse_tasks

    run = RunCorpus(config.run_dir, config.corpus)  # NOTE: a collection task reads the run once it is trained
    return parse_tasks(config.tasks, VectorCache(Path(config.cache_dir) / TASK_VECTORS), run)


def score_and_print(run_dir: str | Path, tasks: list[Task], device: str) -> None:
    """Score `tasks` on the finished run, write them into its summary.json, and print their table."""
    from eval.report import score_run_tasks

    print_task_table(score_run_tasks(run_dir, tasks, device, progress=True))


def print_task_table(results: dict[str, Any]) -> None:
    """The task results (`eval.scoring.score_tasks`) as an aligned table on the terminal."""
    from eval.markdown import task_table

    header, rows = task_table(results)
    click.echo("\ntasks: each score x 100, in brackets its share of the teacher's")
    for line in aligned([header, *rows]):
        click.echo(line)


def print_headline(report: dict[str, Any]) -> None:
    """A report's headline (`eval.headline`): per model its mean task share, size, speed and test fidelity."""
    from eval.headline import headline_notes, headline_table

    header, rows = headline_table(report)
    click.echo("")
    for line in aligned([header, *rows]):
        click.echo(line)
    for note in headline_notes(report):
        click.echo(note)


def aligned(rows: list[list[Any]]) -> list[str]:
    """Rows of cells as text columns, each as wide as its widest cell."""
    widths = [max(len(str(row[i])) for row in rows) for i in range(len(rows[0]))]
    return ["  ".join(str(cell).ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip() for row in rows]
