"""How much of the task quality shorter vectors keep: a run's teacher and students at their full vectors and in
each stored form (`eval.vector_forms`: the first k coordinates in the teacher's basis, int8, binary), for one run
or several that share targets (a Matryoshka-trained run beside the same recipe without it, issue 31).

    python -m eval.experiments.dimensions --run runs/default --run runs/h3-mat --tasks default \\
        --tasks sts:FILE [--forms 256,128,64,binary,128/int8] [--students static,transformer] [--json out.json]
    python -m eval.experiments.dimensions --run runs/default --student runs/h3-mat/students/static --fidelity 64

`--student`: a student folder of the same targets whose run is still training (no summary.json yet).

`--fidelity` (quick, no tasks): each student's prefix fidelity on the run's test texts, the mean cosine of its
vector shortened to k dims in the teacher's basis to the teacher's shortened alike.

Every model is scored as a share of the first run's teacher at full dims (`eval.scoring`); each row also gives
its mean share over the same model's own at full dims, which is what "keeps 97% at 128 dims" reads. Retrieval
counts against the model's own index: a shortened vector searches vectors shortened alike.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import click
import numpy as np

from distill.data.basis import teacher_basis
from distill.data.corpus import Split
from distill.errors import DistillError
from distill.io import write_json
from distill.runtime.vectors import unit
from distill.training.finished import open_run, run_teacher
from eval.encoders import TaskEncoder, VectorCache, fingerprint
from eval.frontier import parse_forms
from eval.models import student_candidates, task_encoders, teacher_candidate
from eval.scoring import score_tasks
from eval.suite import RunCorpus, parse_tasks
from eval.vector_forms import VectorForm, with_forms
from students import load as load_student

logger = logging.getLogger(__name__)

DEFAULT_FORMS = "256,128,64,binary,128/int8"
TASK_VECTORS = "task-vectors"  # NOTE: the cache folder eval.report keeps the teacher's document vectors in


def student_entries(runs: list[Path], extra: list[str], wanted: list[str] | None) -> list[dict[str, str]]:
    """{"name": "RUN/STUDENT", "path"} of each run's students (those in `wanted`, else all) and of each extra
    student folder ("LABEL=PATH" or PATH, named from its path: runs/x/students/static -> x/static)."""
    keys = {open_run(run)[0].get("targets_key") for run in runs}
    if len(keys) > 1:
        raise DistillError("the runs were trained on different targets; compare runs of one teacher and corpus")
    entries = [{"name": f"{run.name}/{s['name']}", "path": s["path"]} for run in runs
               for s in open_run(run)[0]["students"] if not wanted or s["name"] in wanted]  # fmt: skip
    for item in extra:
        label, _, path = item.rpartition("=")
        entries.append({"name": label or f"{Path(path).parent.parent.name}/{Path(path).name}", "path": path})
    return entries


def disk_cached(encoder: TaskEncoder, cache: VectorCache) -> TaskEncoder:
    """`encoder` with every role's vectors kept on disk by its identity and the texts, so the raw vectors the
    forms derive from are embedded once across trials (the evaluators cache only retrieval documents)."""
    if encoder.identity is None:
        return encoder

    def role(encode: Callable[[Sequence[str]], np.ndarray], name: str) -> Callable[[Sequence[str]], np.ndarray]:
        keyed = TaskEncoder(name=encoder.name, encode=encode, identity=lambda: f"{encoder.identity()}|raw {name}")
        return lambda texts: cache.vectors(keyed, texts, fingerprint(texts))

    query = role(encoder.query, "query") if encoder.query else None
    document = role(encoder.document, "document") if encoder.document else None
    return dataclasses.replace(encoder, encode=role(encoder.encode, "encode"), query=query, document=document)


def measure(teacher_run: Path, entries: list[dict[str, str]], specs: list[str], forms: list[VectorForm],
            progress: bool = False) -> dict[str, Any]:  # fmt: skip
    """The task results of the run's teacher and of each student of `entries`, each at full dims and in `forms`."""
    summary, targets = open_run(teacher_run)
    cache = VectorCache(Path(summary["targets"]).parent / TASK_VECTORS)
    tasks = parse_tasks(specs, cache, RunCorpus(teacher_run, summary.get("corpus", "")))
    basis = teacher_basis(targets)
    candidates = [teacher_candidate(run_teacher(summary, "cpu")),
                  *student_candidates({"students": entries}, teacher_run, None, None, None, onnx=False)]  # fmt: skip
    encoders = []
    for candidate in candidates:
        encoder = disk_cached(task_encoders(candidate)[0], cache)
        encoders += [encoder, *with_forms(encoder, basis, forms)]
    return score_tasks(tasks, encoders, progress=progress)


def prefix_fidelity(teacher_run: Path, entries: list[dict[str, str]], dims: list[int], texts: int = 2000) -> list[str]:
    """Lines of each student's prefix fidelity at full dims and each of `dims` on the run's first `texts` test
    texts."""
    _, targets = open_run(teacher_run)
    sample, teacher_vectors = targets.texts_and_vectors(Split.TEST, texts)  # (n, dim)
    basis = teacher_basis(targets)
    lines = []
    for entry in entries:
        vectors = np.asarray(load_student(entry["path"]).encode(sample), dtype=np.float32)  # (n, dim)
        cosines = [float(np.mean(np.sum(unit(basis.project(vectors, k)) * unit(basis.project(teacher_vectors, k)),
                                        axis=1))) for k in [basis.dim, *dims]]  # fmt: skip
        lines.append(f"{entry['name']:<28} " + " ".join(f"{c:>7.4f}" for c in cosines))
    return lines


def table(results: dict[str, Any], dim: int) -> list[str]:
    """One line a model and form: its mean share of the teacher's, and that over its own at full dims."""
    shares = results["mean_share"]
    lines = [f"{'model':<28} {'form':<12} {'bytes':>6} {'share':>7} {'of full':>8}"]
    for name in results["models"]:
        model, _, label = name.partition("@")
        form = parse_forms(label)[0] if label else VectorForm()
        full, share = shares.get(model), shares.get(name)
        own = f"{share / full:>8.1%}" if share is not None and full else f"{'-':>8}"
        value = f"{share:>7.3f}" if share is not None else f"{'-':>7}"
        lines.append(f"{model:<28} {label or 'full':<12} {form.bytes_per_vector(dim):>6} {value} {own}")
    return lines


@click.command()
@click.option("--run", "runs", multiple=True, required=True, type=click.Path(file_okay=False, exists=True),
              help="A finished run; several runs must share targets (the first gives the teacher).")  # fmt: skip
@click.option("--student", "extra", multiple=True, help="A student folder of the same targets not in a finished "
              "run (its run still training): LABEL=PATH or PATH.")  # fmt: skip
@click.option("--tasks", "specs", multiple=True, help="Task specs, as `distill eval --tasks`.")
@click.option("--fidelity", help="Comma-separated dims: print each student's prefix fidelity at them (no tasks).")
@click.option("--forms", default=DEFAULT_FORMS, show_default=True, help="Stored forms: DIMS, PRECISION or both.")
@click.option("--students", help="Comma-separated students of each run to score [default: all].")
@click.option("--json", "json_file", type=click.Path(dir_okay=False), help="Write the task results here too.")
def main(runs: tuple[str, ...], extra: tuple[str, ...], specs: tuple[str, ...], fidelity: str | None, forms: str,
         students: str | None, json_file: str | None) -> None:  # fmt: skip
    """Task shares of a run's models at full dims and in shorter and smaller stored forms."""
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    try:
        wanted = [s.strip() for s in students.split(",")] if students else None
        entries = student_entries([Path(r) for r in runs], list(extra), wanted)
        if fidelity:
            dims = [f.dimensions for f in parse_forms(fidelity) if f.dimensions]
            click.echo(f"{'student':<28} " + " ".join(f"{k:>7}" for k in ["full", *dims]))
            for line in prefix_fidelity(Path(runs[0]), entries, dims):
                click.echo(line)
        if not specs:
            return
        results = measure(Path(runs[0]), entries, list(specs), parse_forms(forms), progress=True)
    except DistillError as e:
        raise click.ClickException(str(e)) from e
    if json_file:
        write_json(json_file, results)
    dim = int(open_run(Path(runs[0]))[1].dim)
    click.echo("\nmean share of the teacher's task scores at full dims; 'of full': over the model's own at full")
    for line in table(results, dim):
        click.echo(line)


if __name__ == "__main__":
    main()
