"""Recipes side by side: each run's students scored on the same tasks (torch), as shares of the teacher's score.

    python -m eval.experiments.recipes runs/default runs/quality --tasks default \\
        --tasks sts:../shared/data/stsb-dev.tsv --tasks passages:../shared/data/passages.txt

The scores are `distill run --tasks`'s (eval.report.score_run_tasks; each run's summary.json keeps
them), so a trial run and the default are compared on one footing; retrieval is also shown against
the teacher's index. `distill eval` gives the same torch figures beside the ONNX backends and speed.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import click

from distill.cli.tasks import aligned
from distill.runfolder import read_summary
from eval.markdown import main_rows, metric_label
from eval.report import EvalSettings, run_tasks, score_run_tasks


def share_rows(run: str, results: dict[str, Any]) -> list[list[str]]:
    """One row per student of a run: its share of the teacher's score on each shown metric, and its mean share."""
    columns = main_rows(results)
    rows = []
    for model in results["models"]:
        if model == results["teacher"]:
            continue
        cells = ["-" if r["shares"].get(model) is None else f"{100 * r['shares'][model]:.1f}%" for r in columns]
        mean = results["mean_share"].get(model)
        rows.append([f"{Path(run).name}/{model}", *cells, "-" if mean is None else f"{100 * mean:.1f}%"])
    return rows


def header(results: dict[str, Any]) -> list[str]:
    return ["run/student", *(f"{r['task']} {metric_label(r['metric'])}" for r in main_rows(results)), "mean share"]


@click.command()
@click.argument("runs", nargs=-1, required=True, type=click.Path(exists=True, file_okay=False))
@click.option("--tasks", multiple=True, default=["default"], show_default=True, metavar="SPEC",
              help="Task specs (distill eval's --tasks).")  # fmt: skip
@click.option("--device", default="cpu", show_default=True)
def main(runs: tuple[str, ...], tasks: tuple[str, ...], device: str) -> None:
    """Score each run's teacher and students on the tasks and print their shares side by side."""
    logging.basicConfig(level=logging.WARNING)
    table: list[list[str]] = []
    teacher: dict[str, float] = {}
    for run in runs:
        parsed = run_tasks(EvalSettings(tasks=list(tasks)), read_summary(run), Path(run))
        results = score_run_tasks(run, parsed, device, progress=True)
        if not table:
            table.append(header(results))
            teacher = {f"{r['task']} {metric_label(r['metric'])}": r["scores"][results["teacher"]]
                       for r in results["rows"] if r["main"]}  # fmt: skip
        table += share_rows(run, results)
    click.echo("\n".join(aligned(table)))
    click.echo("the teacher's own scores (x 100): " + ", ".join(f"{k} {v:.2f}" for k, v in teacher.items()))


if __name__ == "__main__":
    main()
