"""A run folder, readable from any directory and after it is moved or copied.

`distill run` leaves `students/<name>/`, `train/<name>/` and `summary.json` in its folder; `distill export` and
`distill eval` add `export/` and `report.*`. summary.json records every path inside the folder relative to it
(`students/static`), and what lies outside it (the targets cache, a local corpus or teacher) both relative to the
folder and absolute, so a run moved alone, or moved with its cache beside it, still finds everything.
`read_summary` gives the summary with each of those paths resolved; everything that reads a run goes through it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from distill.errors import DistillError
from distill.io import read_json, write_json

SUMMARY = "summary.json"
OUTSIDE = ("targets", "corpus", "teacher")  # recorded paths that may lie outside the run folder


def summary_file(run_dir: str | Path) -> Path:
    return Path(run_dir) / SUMMARY


def is_run(run_dir: str | Path) -> bool:
    return summary_file(run_dir).is_file()


def read_summary(run_dir: str | Path) -> dict[str, Any]:
    """The run's summary.json with every recorded path resolved to where it is now (absolute)."""
    run_dir = Path(run_dir)
    if not is_run(run_dir):
        what = "does not exist" if not run_dir.exists() else "is not a run folder (it has no summary.json)"
        raise DistillError(f"{str(run_dir)!r} {what}; make one with `make distill` or `distill run --output DIR`")
    try:
        summary = read_json(summary_file(run_dir))
    except (ValueError, UnicodeDecodeError) as e:
        raise DistillError(f"{summary_file(run_dir)} is damaged ({e}); run `distill run` into a new --output") from e
    summary["run_dir"] = str(run_dir.resolve())
    for key in OUTSIDE:
        if summary.get(key):
            summary[key] = resolve(run_dir, summary[key], summary.get(f"{key}_absolute"), keep_names=key != "targets")
    for entry in summary.get("students", []):
        entry["path"] = resolve(run_dir, entry["path"])
    return summary


def resolve(run_dir: Path, recorded: str, absolute: str | None = None, *, keep_names: bool = False) -> str:
    """Where a recorded path is now: relative to the run folder, else its absolute form, else (a run of an earlier
    version, which recorded paths relative to where `distill run` started) relative to this directory.

    With `keep_names`, a value that is no path at all (a hub name, "gensim") is kept as it is.
    """
    candidates = [run_dir / recorded, Path(absolute) if absolute else None, Path(recorded)]
    for path in candidates:
        if path is not None and path.exists():
            return str(path.resolve())
    if keep_names and not Path(recorded).is_absolute():
        return recorded
    return str((run_dir / recorded).resolve())


def write_summary(run_dir: str | Path, summary: dict[str, Any]) -> None:
    """Write `summary` (paths as the run used them) into the run folder, as `read_summary` reads it back."""
    run_dir = Path(run_dir)
    record = {**summary, "run_dir": "."}
    for key in OUTSIDE:
        value = record.get(key)
        if value and Path(value).exists():
            record.update(_outside(run_dir, key, value))
    record["students"] = [
        {**entry, "path": os.path.relpath(Path(entry["path"]).resolve(), run_dir.resolve())}
        for entry in record.get("students", [])
    ]
    write_json(summary_file(run_dir), record)


def record_targets(run_dir: str | Path, root: str | Path) -> None:
    """Record in the run's summary.json where its targets are now (built again, or moved)."""
    record = read_json(summary_file(run_dir))
    write_json(summary_file(run_dir), {**record, **_outside(Path(run_dir), "targets", root)})


def _outside(run_dir: Path, key: str, path: str | Path) -> dict[str, str]:
    """A path outside (or inside) the run folder as summary.json records it: relative to the folder, and absolute."""
    absolute = Path(path).resolve()
    return {key: os.path.relpath(absolute, run_dir.resolve()), f"{key}_absolute": str(absolute)}


def check_writable(folder: str | Path, what: str) -> None:
    """Refuse, before any work, a folder that cannot be made or written to (one line naming `what`); nothing is
    made here: the nearest part of the path that exists must be a folder this process may write to."""
    folder = Path(folder).absolute()
    existing = next(p for p in (folder, *folder.parents) if p.exists())
    if not existing.is_dir():
        raise DistillError(f"{what} {str(folder)!r} cannot be written to: {str(existing)!r} is a file, not a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise DistillError(f"{what} {str(folder)!r} cannot be written to: no permission to write in {str(existing)!r}")
