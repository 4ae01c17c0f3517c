"""`make bench`: the headline comparison for a distilled run, measured now, in one process.

1. The eval suite (`distill eval`) on the run, printed as one headline table: fidelity on the
   test split, on the other text forms of `distill.data.domains` and, with `--other-text FILE`, on the
   first lines of that file (for example ../shared/data/corpus-reviews-speeches.txt, which no
   student trains on); STS; size; and speed as ratios to the teacher timed beside the students.
   With `--sts FILE`, each student's STS Spearman and its gap to the teacher's in points.
2. The token generator against its reference: the same student built on the teacher's real
   per-token vectors instead of generated ones.
3. With `--grow-on FILE` (for example ../shared/data/corpus-reviews-speeches.txt): the static
   student trained on growing slices of that text, tested on the run's own test split, to see
   how fidelity grows with more text.
4. A load test of `distill serve` on loopback at 1, 8 and 32 clients, once the run is exported.
5. With `--tasks SPEC` (`distill eval`'s): each task's scores and their shares of the teacher's, for
   every model and backend. `make bench` measures runs/default and, when `make quality` has made
   it, runs/quality, each with the small suite and the ../shared STS and passage tasks when present.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import click

from distill.cli.tasks import print_task_table
from distill.data.corpus import Split
from distill.data.domains import other_domain_texts
from distill.data.targets import Targets
from distill.errors import DistillError
from distill.export.exporter import EXPORT_DIR
from distill.io import write_json
from distill.runtime import MODEL_FILES
from distill.teacher.model import Teacher
from distill.training.config import RunConfig
from distill.training.finished import open_run, run_teacher
from distill.training.pipeline import run_from_model
from distill.training.trainer import TrainConfig, Trainer, fidelity
from eval.report import EvalSettings, evaluate_from_model, read_texts, run_tasks, write_report
from eval.tasks import STSEvaluator
from students import student_class
from students.tokengen import TokenGenStudent

logger = logging.getLogger(__name__)

OTHER_LINES = 2000  # lines of --other-text measured: enough for a stable mean cosine, quick for the teacher
# The targets: the most STS points (x 100) a student of each kind may lose against the teacher.
STS_GAP_TARGETS = {"transformer": 1.0, "static": 4.0, "tokengen": 4.0}


def reference_fidelity(teacher: Teacher, targets: Targets, work: Path) -> float:
    """Test fidelity of the token-generator student built on the teacher's real per-token vectors."""
    student = TokenGenStudent.from_teacher(teacher, targets, source="teacher")
    Trainer(student, targets, TrainConfig(**TokenGenStudent.default_training), work).train()
    test_texts, test_vectors = targets.texts_and_vectors(Split.TEST)
    return fidelity(student, student.token_ids(test_texts), test_vectors)


def grow(
    run_dir: Path, teacher: Teacher, targets: Targets, text_file: str, texts: list[str], sizes: list[int],
    student: str = "static",
) -> list[dict[str, Any]]:  # fmt: skip
    """`student` trained on the first `size` of `texts` (read from `text_file`), tested on the run's test split."""
    test_texts, test_vectors = targets.texts_and_vectors(Split.TEST)
    rows = []
    for size in sizes:
        config = RunConfig(corpus=text_file, students={student: {}}, output=str(run_dir / "bench" / f"grow-{size}"),
                           cache_dir=str(targets.root.parent))  # fmt: skip
        logger.info("training %s on %d texts of %s", student, min(size, len(texts)), text_file)
        grown = run_from_model(teacher, texts[:size], config, progress=True)
        trained = student_class(student).load(grown.students[0].path)
        rows.append({
            "student": student, "texts": min(size, len(texts)), "own_test_fidelity": grown.students[0].test_fidelity,
            "run_test_fidelity": fidelity(trained, trained.token_ids(test_texts), test_vectors),
        })  # fmt: skip
    return rows


def headline(report: dict[str, Any]) -> list[str]:
    """The headline table: what its cosine columns are measured on, then one line per model."""
    data, on_text = report["data"], report["teacher"]["fidelity"].get("text")
    text = f"the first {on_text['texts']} lines of {data['text_file']}" if on_text else "no --other-text file"
    lines = [f"cosine to the teacher on the run's test split (cosine), on other text forms never trained on (other "
             f"cos: mean of {', '.join(data.get('other_domain') or {}) or 'none available'}) and on {text} (file cos)",
             f"{'model':<18} {'cosine':>7} {'other cos':>9} {'file cos':>8} {'nbrs':>6} {'STS':>6} {'MB':>6} "
             f"{'int8 MB':>8} {'p50 ms':>7} {'b32 x':>7} {'b128 x':>7} {'int8 b32 x':>10}"]  # fmt: skip
    rows = {"teacher": report["teacher"], **report["students"], **report["baselines"]}
    for name, entry in rows.items():
        test, reference = entry["fidelity"]["test"], next(iter(entry["latency"].values()))
        on_file = entry["fidelity"].get("text", {}).get("cosine_mean")
        int8 = entry["latency"].get("onnx_int8")
        label = name if entry["role"] != "baseline" else f"{name} (peer)"
        lines.append(
            f"{label:<18} {_fmt(test['cosine_mean'], 7, 4)} {_fmt(entry.get('other_domain_fidelity'), 9, 4)} "
            f"{_fmt(on_file, 8, 4)} {_fmt(test['neighbours_top10'], 6, 3)} "
            f"{_fmt(entry['tasks'].get('sts'), 6, 2)} {_fmt(_mb(entry['bytes'].get('saved')), 6, 1)} "
            f"{_fmt(_mb(entry['bytes'].get('onnx_int8')), 8, 1)} {reference['single_p50_ms']:>7.2f} "
            f"{reference['speedup']['batch32_speedup']:>7.2f} {reference['speedup']['batch128_speedup']:>7.2f} "
            f"{_fmt(int8['speedup']['batch32_speedup'] if int8 else None, 10, 2)}"
        )
    return lines


def sts_gaps(report: dict[str, Any]) -> dict[str, Any] | None:
    """Each student's STS Spearman (x 100), its gap to the teacher's in points and the target for its kind."""
    teacher = report["teacher"]["tasks"].get("sts")
    if teacher is None:
        return None
    students = {}
    for name, entry in report["students"].items():
        sts, target = entry["tasks"]["sts"], STS_GAP_TARGETS.get(entry["details"].get("kind", ""))
        students[name] = {"sts": sts, "gap_points": teacher - sts, "target_points": target,
                          "met": None if target is None else teacher - sts <= target}  # fmt: skip
    return {"file": report["data"]["sts_file"], "teacher": teacher, "students": students}


def sts_lines(gaps: dict[str, Any]) -> list[str]:
    """`sts_gaps` as printed: the teacher's figure, then a line per student."""
    lines = [f"STS Spearman x100 on {gaps['file']}: teacher {gaps['teacher']:.2f}"]
    for name, row in gaps["students"].items():
        line = f"  {name:<16} {row['sts']:>6.2f}  gap {row['gap_points']:>5.2f} points"
        if row["target_points"] is not None:
            line += f" (target within {row['target_points']:g}: {'met' if row['met'] else 'missed'})"
        lines.append(line)
    return lines


def _mb(size: int | None) -> float | None:
    return None if size is None else size / 2**20


def _fmt(value: float | None, width: int, digits: int) -> str:
    return f"{'-':>{width}}" if value is None else f"{value:>{width}.{digits}f}"


@click.command()
@click.option("--run", "run_dir", default="runs/default", show_default=True, help="The run folder to measure.")
@click.option("--sts", "sts_file", type=click.Path(dir_okay=False), help="An STS file (sentence, sentence, score).")
@click.option("--other-text", type=click.Path(dir_okay=False),
              help="Held-out text of other forms (one text a line) to measure each model's fidelity on.")  # fmt: skip
@click.option("--other-lines", type=click.IntRange(min=12), default=OTHER_LINES, show_default=True,
              help="The first this many non-empty lines of --other-text are measured.")  # fmt: skip
@click.option("--grow-on", type=click.Path(dir_okay=False),
              help="Also train the static student on slices of this text, tested on the run's test split.")  # fmt: skip
@click.option("--grow-sizes", default="5000,20000", show_default=True, help="Slice sizes for --grow-on.")
@click.option("--load-test/--no-load-test", default=True, show_default=True,
              help="Load-test `distill serve` with each exported student (after `make export`).")  # fmt: skip
@click.option("--reference/--no-reference", default=True, show_default=True,
              help="Train the token generator's real-table reference.")  # fmt: skip
@click.option("--tasks", multiple=True, metavar="SPEC", help="Tasks to score every model on (distill eval's --tasks).")
def main(run_dir: str, sts_file: str | None, other_text: str | None, other_lines: int, grow_on: str | None,
         grow_sizes: str, load_test: bool, reference: bool, tasks: tuple[str, ...]) -> None:  # fmt: skip
    """Measure a run now and print its headline figures; everything is also saved in RUN/bench.json."""
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    for noisy in ("transformers", "sentence_transformers", "httpx", "model2vec"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    run = Path(run_dir)
    try:
        out = bench(run, sts_file, grow_on, [int(s) for s in grow_sizes.split(",")], load_test, reference,
                    other_text=other_text, other_lines=other_lines, tasks=list(tasks))  # fmt: skip
    except (DistillError, ValueError) as e:
        raise click.ClickException(str(e)) from e
    write_json(run / "bench.json", out)


def bench(run: Path, sts_file: str | None, grow_on: str | None, sizes: list[int], load_test: bool, reference: bool,
          *, other_text: str | None = None, other_lines: int = OTHER_LINES,
          tasks: list[str] | None = None) -> dict[str, Any]:  # fmt: skip
    sts = STSEvaluator(sts_file) if sts_file else None  # NOTE: bad input files fail before any work
    other_texts = read_texts(other_text)[:other_lines] if other_text else None
    grow_texts = read_texts(grow_on) if grow_on else []
    summary, targets = open_run(run)
    teacher = run_teacher(summary)  # NOTE: loaded once for the eval, the reference and the growth runs
    settings = EvalSettings(sts_file=sts_file, text_file=other_text, tasks=tasks or [])
    report, word_vectors = evaluate_from_model(teacher, targets, summary, run, settings, extra_texts=other_texts,
                                               sts=sts, other_domain=other_domain_texts(),
                                               tasks=run_tasks(settings, summary, run), progress=True)  # fmt: skip
    write_report(run, report, word_vectors)
    out: dict[str, Any] = {"report": str(run / "report.json"), **held_out(report)}
    click.echo(f"\n{run}: {report['data']['test_texts']} test texts, {report['machine']['threads']} threads; "
               "speeds are ratios to the teacher timed in this run (x > 1: faster)")  # fmt: skip
    click.echo("\n".join(headline(report)))
    if "tasks" in report:
        print_task_table(report["tasks"])
    if gaps := sts_gaps(report):
        out["sts"] = gaps
        click.echo("\n" + "\n".join(sts_lines(gaps)))
    if reference and any(e["details"].get("kind") == "tokengen" for e in report["students"].values()):
        real = reference_fidelity(teacher, targets, run / "bench" / "tokengen-reference")
        generated = next(e for e in report["students"].values() if e["details"].get("kind") == "tokengen")
        out["tokengen_reference"] = {"reference": real, "generated": generated["fidelity"]["test"]["cosine_mean"]}
        click.echo(f"\ntoken generator: test cosine {out['tokengen_reference']['generated']:.4f} against {real:.4f} "
                   f"for the same student on the teacher's real token vectors (loss "
                   f"{real - out['tokengen_reference']['generated']:.4f})")  # fmt: skip
    if grow_on:
        out["grow"] = grow(run, teacher, targets, grow_on, grow_texts, sizes)
        click.echo(f"\nstatic student trained on more text ({grow_on}), cosine on the run's test split:")
        for row in out["grow"]:
            click.echo(f"  {row['texts']:>7,} texts: {row['run_test_fidelity']:.4f}")
    if load_test:
        out["load_test"] = load_tests(run)
    return out


def held_out(report: dict[str, Any]) -> dict[str, Any]:
    """Each student's fidelity on text it never trained on: the other forms (each set, their mean) and --other-text."""
    students = report["students"]
    forms = {name: {"sets": e.get("other_domain", {}), "mean": e.get("other_domain_fidelity")}
             for name, e in students.items()}  # fmt: skip
    out: dict[str, Any] = {"other_domain": forms}
    if report["data"]["text_file"]:
        out["other_text"] = {
            "file": report["data"]["text_file"], "texts": report["teacher"]["fidelity"]["text"]["texts"],
            "cosine": {name: e["fidelity"]["text"]["cosine_mean"] for name, e in students.items()},
        }  # fmt: skip
    return out


def load_tests(run: Path) -> dict[str, Any]:
    """`distill serve` under load for each exported student (int8, as one would ship it)."""
    from eval.experiments.loadtest import load_test, print_report

    results = {}
    for folder in sorted((run / EXPORT_DIR).glob("*")):
        if (folder / MODEL_FILES["int8"]).is_file():
            click.echo(f"\nload test: {folder.name} (int8) on loopback")
            results[folder.name] = load_test(folder, precision="int8")
            print_report(results[folder.name])
    if not results:
        click.echo("\nno exported students to load-test: run `make export` first")
    return results


if __name__ == "__main__":
    main()
