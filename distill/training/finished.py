"""A finished run: its summary and targets (`open_run`), its teacher as the students were distilled from it
(`run_teacher`), and its targets built again from the settings it recorded (`rebuild_targets`: a run copied to a
machine without its cache needs no training again)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from distill.data.targets import Targets, cache_key
from distill.device import Placement
from distill.errors import DistillError
from distill.runfolder import read_summary, record_targets
from distill.teacher.model import Teacher
from distill.training.config import RunConfig
from distill.training.pipeline import Stopwatch, prepare


def open_run(run_dir: str | Path) -> tuple[dict[str, Any], Targets]:
    """A finished run's summary and the targets its students were trained and tested on."""
    summary = read_summary(run_dir)
    if not summary.get("targets") or not (Path(summary["targets"]) / "meta.json").is_file():
        raise DistillError(f"the teacher's targets of {str(run_dir)!r} are not at {summary.get('targets')!r} (its "
                           "students are intact): eval and export measure them on those targets; "
                           f"`distill targets --run {run_dir}` builds them again from the run's settings, no training "
                           "needed")  # fmt: skip
    return summary, Targets.open(Path(summary["targets"]))


def run_teacher(summary: dict[str, Any], device: str = "auto") -> Teacher:
    """The teacher of a finished run, as its students were distilled from it (prompt and precision included)."""
    teacher = Teacher.load(summary["teacher"], max_length=summary["max_length"], prompt_text=summary.get("prompt", ""),
                           trust_remote_code=summary.get("trust_remote_code", False))  # fmt: skip
    return teacher.place(Placement.resolve(device, summary.get("precision", "fp32")))


def rebuild_targets(run_dir: str | Path, cache_dir: str | None = None, *, progress: bool = False) -> Targets:
    """Build the targets of a finished run again, from the settings it recorded, into `cache_dir` [default: the
    recorded cache folder], and record where they are now; refused if they come out other than the run's."""
    summary = read_summary(run_dir)
    settings = summary.get("settings")
    if not settings:
        raise DistillError(f"{str(run_dir)!r} records no settings (made by an earlier version); run `distill targets` "
                           "with the flags it was made with")  # fmt: skip
    if str(settings["corpus"]).startswith("a list of "):
        raise DistillError(f"{str(run_dir)!r} was distilled from a Python list of texts, which it does not keep; "
                           "call distill() with the same list and output to build its targets again")  # fmt: skip
    cache = cache_dir or str(Path(summary["targets"]).parent)
    config = RunConfig(**settings, token_targets=summary.get("token_targets", "auto"), output=str(run_dir),
                       cache_dir=cache)  # fmt: skip
    teacher, targets = prepare(config, Stopwatch(), progress)
    key = cache_key(teacher, targets.texts.fingerprint, targets.split, token_vectors=False)
    if summary.get("targets_key") and key != summary["targets_key"]:
        raise DistillError(f"the targets built now differ from those {str(run_dir)!r} was trained on (has its "
                           "corpus or teacher changed?); nothing was recorded")  # fmt: skip
    record_targets(run_dir, targets.root)
    return targets
