"""What each setting of the collection recipe buys on a collection, and what it costs in time: one row a trial.

    python -m eval.experiments.collection ../shared/data/beir/nfcorpus --trials recipe,more-epochs,index-loss

Every trial is `configs/collection.toml` on the collection with a few settings changed (`TRIALS`), trained into
runs/collection-trials/<trial>/ (targets are cached, so trials on the same texts share them), then scored on the
collection's own queries and on its held-out passages (`--tasks collection`), as shares of the teacher's nDCG@10
against the student's own index and against the teacher's. A row also gives the students' fidelity on text of
other forms (summary.json) and the seconds of each stage. A trial already run is read back, not run again
(--again: run it anew).
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

import click

from distill.cli.tasks import aligned
from distill.data.corpus import iter_corpus
from distill.errors import DistillError
from distill.io import read_json
from distill.runfolder import read_summary
from distill.training.config import build_config, read_toml
from distill.training.pipeline import run
from eval.report import EvalSettings, run_tasks, score_run_tasks
from eval.scoring import INDEX_SUFFIX

RECIPE = Path(__file__).parents[2] / "configs" / "collection.toml"
TRIALS: dict[str, dict[str, Any]] = {
    "recipe": {},
    "no-mix": {"mix": None},
    "half-collection": {"limit": 0.5},  # a share of the collection's documents
    "more-epochs": {"transformer": {"epochs": 4}, "static": {"epochs": 10}},
    "index-loss": {"index-weight": 1.0},
    "similarity-loss": {"similarity-weight": 1.0},
    "hidden-loss": {"transformer": {"hidden-loss-weight": 1.0}},
    "three-layers": {"transformer": {"layers": [0, 3, 5]}},
    "bf16": {"precision": "bf16"},
    "quarter-mix": {"mix-share": 0.25, "augment": ["spans", "questions"]},  # the recipe before 2026-12-06
    "sentences": {"augment": ["spans", "questions", "words", "bags", "sentences"]},
}


def trial_config(collection: str, trial: str, root: Path) -> dict[str, Any]:
    """The recipe's settings with the trial's on top, for `collection`, into `root/trial`."""
    values = read_toml(RECIPE)
    values.update({"corpus": collection, "output": str(root / trial)})
    for key, value in TRIALS[trial].items():
        if isinstance(value, dict):
            values[key] = {**values.get(key, {}), **value}
        elif key == "limit":
            values[key] = max(1, round(value * sum(1 for _ in iter_corpus(collection))))
        else:
            values[key] = value
    return values


def run_trial(collection: str, trial: str, root: Path, again: bool) -> dict[str, Any]:
    """The trial's summary (with its task scores), run now unless it is there already."""
    summary_file = root / trial / "summary.json"
    if again or not summary_file.is_file() or "tasks" not in read_json(summary_file):
        values = trial_config(collection, trial, root)
        config = build_config(values, {})  # NOTE: file values, not flags: a trial's None (no mix) is kept
        began = time.perf_counter()
        run(config, overwrite=True, progress=True)  # NOTE: a trial run again replaces its earlier run
        tasks = run_tasks(EvalSettings(tasks=config.tasks), read_summary(root / trial), root / trial)
        score_run_tasks(root / trial, tasks, "cpu", progress=True)
        summary = read_json(summary_file)
        summary["trial_seconds"] = round(time.perf_counter() - began, 1)
        summary_file.write_text(json.dumps(summary, indent=2, sort_keys=True) + "\n")
    return read_json(summary_file)


def rows(trial: str, summary: dict[str, Any]) -> list[list[str]]:
    """One row per student: its shares on each retrieval task (own index / teacher's), other forms, times."""
    results = summary["tasks"]
    shares = {(r["task"], r["metric"]): r["shares"] for r in results["rows"]}
    tasks = [t["name"] for t in results["tasks"]]
    stages = summary.get("stage_seconds", {})
    out = []
    for student in summary["students"]:
        name = student["name"]
        cells = []
        for task in tasks:
            own, index = shares.get((task, "ndcg_at_10"), {}), shares.get((task, "ndcg_at_10" + INDEX_SUFFIX), {})
            cells.append(f"{_pct(own.get(name))} / {_pct(index.get(name))}")
        out.append([trial, name, *cells, f"{student['other_domain_fidelity']:.4f}",
                    f"{stages.get('targets', 0):.0f}", f"{stages.get(f'train {name}', 0):.0f}",
                    f"{summary.get('trial_seconds', 0):.0f}"])  # fmt: skip
    return out


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}%"


@click.command()
@click.argument("collection", type=click.Path(exists=True))
@click.option("--trials", default="recipe", show_default=True, help=f"Comma-separated, from: {', '.join(TRIALS)}.")
@click.option("--root", default="runs/collection-trials", show_default=True, type=click.Path(file_okay=False))
@click.option("--again", is_flag=True, help="Run trials that are there already anew.")
def main(collection: str, trials: str, root: str, again: bool) -> None:
    """Run (or read back) each trial of the collection recipe and print one row a student."""
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    names = [t.strip() for t in trials.split(",") if t.strip()]
    unknown = [t for t in names if t not in TRIALS]
    if unknown:
        raise click.ClickException(f"unknown trial(s) {', '.join(unknown)}; choose from {', '.join(TRIALS)}")
    table: list[list[str]] = []
    try:
        for trial in names:
            summary = run_trial(collection, trial, Path(root), again)
            if not table:
                tasks = [t["name"] for t in summary["tasks"]["tasks"]]
                table.append(["trial", "student", *(f"{t} own / teacher's index" for t in tasks), "other forms",
                              "targets s", "train s", "all s"])  # fmt: skip
            table += rows(trial, summary)
    except DistillError as e:
        raise click.ClickException(str(e)) from e
    click.echo("\n".join(aligned(table)))


if __name__ == "__main__":
    main()
