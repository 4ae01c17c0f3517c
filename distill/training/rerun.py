"""A `distill run` into a folder that already holds a run: it adds its students, goes on (`--resume`), replaces
(`--overwrite`), or is refused in one line before the teacher runs. It never drops a trained student unsaid.

The students of one run share one teacher and one set of targets (eval measures them all on its test split), so
a run adds to another only when the settings that shape the targets are the same (`target_settings`, recorded in
summary.json); `check_targets` checks the targets themselves once they are built, for the Python front door, whose
list of texts has no name to compare.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import Any

from distill.errors import DistillError
from distill.runfolder import check_writable, is_run, read_summary
from distill.training.config import RunConfig

logger = logging.getLogger(__name__)

TARGET_SETTINGS = ("teacher", "prompt", "prompt_text", "max_length", "precision", "corpus", "text_column",
                   "title_column", "documents", "limit", "passages", "mix", "mix_share", "augment", "valid_fraction",
                   "test_fraction", "split_seed")  # fmt: skip
STUDENT_FOLDERS = ("students", "train", "export")  # where a run keeps each student's files, by its name


def target_settings(config: RunConfig) -> dict[str, Any]:
    """The settings that decide the targets, local paths made absolute (a run read from elsewhere compares alike)."""
    values = {key: getattr(config, key) for key in TARGET_SETTINGS}
    for key in ("teacher", "corpus", "mix"):
        if values[key] and Path(values[key]).exists():
            values[key] = str(Path(values[key]).resolve())
    return values


def check_output(config: RunConfig, *, resume: bool, overwrite: bool) -> None:
    """Refuse, before any work, an output or cache folder that cannot be written, and a run that would replace
    trained students or join a run of other targets without `--resume` / `--overwrite`."""
    check_writable(config.run_dir, "--output")
    check_writable(config.cache_dir, "--cache-dir")
    if not is_run(config.run_dir) or overwrite:
        return
    existing = read_summary(config.run_dir)
    here = f"{str(config.run_dir)!r}"
    trained = [s["name"] for s in existing.get("students", [])]
    again = [name for name in config.students if name in trained]
    if again and not resume:
        raise DistillError(f"{here} already holds trained student(s) {', '.join(again)}: --resume goes on with them, "
                           "--overwrite trains them again, or give another --output")  # fmt: skip
    recorded = existing.get("settings")
    if recorded is None:
        return  # NOTE: a run of an earlier version records no settings: its targets are compared once built
    settings = target_settings(config)
    changed = [key for key, value in settings.items() if recorded.get(key) != value]
    if changed:
        key = changed[0]
        raise DistillError(f"{here} holds a run with another {key.replace('_', '-')} ({recorded.get(key)!r}, here "
                           f"{settings[key]!r}); its students and these would not share targets: "
                           "give another --output, or --overwrite to replace that run")  # fmt: skip


def check_targets(run_dir: Path, existing: dict[str, Any] | None, targets_key: str, *, overwrite: bool) -> None:
    """Refuse to add students trained on other targets than those of the run in `run_dir` (its summary,
    `existing`, None where there is none): another teacher, corpus or split."""
    if overwrite or existing is None:
        return
    if existing.get("students") and existing.get("targets_key", targets_key) != targets_key:
        raise DistillError(f"{str(run_dir)!r} holds students trained on other targets (another teacher, corpus or "
                           "split): give another --output, or --overwrite to replace that run")  # fmt: skip


def kept_students(
    run_dir: Path, existing: dict[str, Any] | None, names: list[str], targets_key: str
) -> list[dict[str, Any]]:
    """The earlier students of the run in `run_dir` (its summary, `existing`) that this run does not train again,
    when they share its targets; the others' folders are removed (an `--overwrite` of a run of other targets), and
    said in the log."""
    if existing is None:
        return []
    others = [s for s in existing.get("students", []) if s["name"] not in names]
    if existing.get("targets_key", targets_key) == targets_key:
        if others:
            logger.info("kept the run's earlier student(s) %s beside the new", ", ".join(s["name"] for s in others))
        return others
    for entry in others:
        for folder in STUDENT_FOLDERS:
            shutil.rmtree(run_dir / folder / entry["name"], ignore_errors=True)
    if others:
        logger.warning("--overwrite: removed the run's earlier student(s) %s, trained on other targets",
                       ", ".join(s["name"] for s in others))  # fmt: skip
    return []
