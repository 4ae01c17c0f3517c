"""`distill eval`: the teacher, every student and the peer baseline on the same data, in one process.

`evaluate_run` measures, on the run's test split and on held-out text of other forms than the
training corpus (`distill.data.domains`, which no student trains on), and on the user's tasks
(`--tasks`, `eval.suite`; `--mteb`, `eval.mteb_tasks`): each task's scores for the teacher and every
model and backend, each also as a share of the teacher's (`eval.scoring`). `write_report` writes
`report.json`, `report.md` and the plots into the run folder. Quality figures are deterministic
(fixed data, fixed folds, fixed seeds); speeds are taken with one thread count for every model and
also given as ratios to the teacher timed beside them.
"""

from __future__ import annotations

import logging
import platform
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from distill.cards import write_run_cards
from distill.data.basis import teacher_basis
from distill.data.corpus import Split
from distill.data.domains import other_domain_texts
from distill.data.targets import Targets
from distill.errors import DistillError
from distill.io import atomic_path, read_json, write_json
from distill.runfolder import read_summary
from distill.teacher.model import Teacher
from distill.training.finished import open_run, run_teacher
from distill.training.trainer import token_fidelity
from eval import plots
from eval.encoders import VectorCache
from eval.fidelity import DomainFidelityEvaluator, FidelityEvaluator
from eval.frontier import DEFAULT_FORMS, frontier_section, parse_forms
from eval.latency import measure, with_ratios
from eval.markdown import render_markdown
from eval.models import (
    M2V_PEERS,
    TEACHER_EXPORT,
    Candidate,
    Model2VecVariant,
    add_teacher_onnx,
    model2vec_candidate,
    model2vec_peers,
    student_candidates,
    task_encoders,
    teacher_candidate,
)
from eval.scoring import score_tasks
from eval.suite import RunCorpus, Task, parse_tasks
from eval.tasks import AnalogyEvaluator, PolarityProbe, STSEvaluator, WordSimilarityEvaluator

logger = logging.getLogger(__name__)

REPORT_JSON, REPORT_MD = "report.json", "report.md"
TASK_VECTORS = "task-vectors"  # the cache of corpus vectors, in the run's cache folder (beside its targets)
MTEB_RESULTS = "mteb"  # MTEB's own result files, in the run folder


@dataclass
class EvalSettings:
    text_file: str | None = None  # extra text to measure fidelity on, one text a line
    sts_file: str | None = None  # sentence, sentence, gold score a line
    latency_texts: int = 1024  # test texts timed at each batch size
    singles: int = 100  # texts timed one at a time
    repeats: int = 3  # timed passes per batch size at least (the median counts)
    min_seconds: float = 1.0  # each speed measurement goes on at least this long
    threads: int | None = None  # torch and onnxruntime threads [default: torch's]
    baseline: bool = True  # evaluate model2vec's distillation of the teacher too
    model2vec_peers: str = M2V_PEERS  # with `baseline`, its quantised variants too ("none": none; `Model2VecVariant`)
    teacher_onnx: bool = True  # time the teacher as ONNX fp32 / int8 too (exported once, as the students are)
    device: str = "auto"  # where the teacher and the students' torch backends run (auto: CUDA when present)
    tasks: list[str] = field(default_factory=list)  # task specs (`eval.suite`): "default", KIND:PATH, PATH
    mteb: list[str] = field(default_factory=list)  # MTEB task names (needs the mteb extra, and its data)
    cache_dir: str | None = None  # where corpus vectors are cached [default: the run's cache folder]
    vector_forms: str = DEFAULT_FORMS  # stored forms scored on the tasks for the size frontier ("none": none)

    def __post_init__(self) -> None:
        self.tasks, self.mteb = list(self.tasks), [t.strip() for m in self.mteb for t in m.split(",") if t.strip()]
        parse_forms(self.vector_forms)  # NOTE: a bad spec fails here, before any model loads
        model2vec_peers(self.model2vec_peers)
        if min(self.latency_texts, self.singles, self.repeats) <= 0 or (self.threads or 1) <= 0 or self.min_seconds < 0:
            raise DistillError("latency texts, singles, repeats and threads must be positive, min seconds not negative")


def evaluate_run(run_dir: str | Path, settings: EvalSettings, *, progress: bool = False) -> tuple[dict, dict]:
    """The report of a finished run, and each model's vectors for the words of the PCA map."""
    extra_texts = read_texts(settings.text_file) if settings.text_file else None  # NOTE: a bad file fails first
    sts = STSEvaluator(settings.sts_file) if settings.sts_file else None
    summary, targets = open_run(run_dir)
    tasks = run_tasks(settings, summary, Path(run_dir))
    teacher = run_teacher(summary, settings.device)
    return evaluate_from_model(teacher, targets, summary, Path(run_dir), settings, extra_texts=extra_texts, sts=sts,
                               other_domain=other_domain_texts(), tasks=tasks, progress=progress)  # fmt: skip


def run_tasks(settings: EvalSettings, summary: dict[str, Any], run_dir: Path) -> list[Task]:
    """The tasks `settings` names, read (and MTEB's data fetched) before any model loads, so a bad one fails first."""
    cache = VectorCache(Path(settings.cache_dir or Path(summary["targets"]).parent) / TASK_VECTORS)
    tasks = parse_tasks(settings.tasks, cache, RunCorpus(run_dir, summary.get("corpus", "")))
    if settings.mteb:
        from eval.mteb_tasks import mteb_tasks

        tasks += mteb_tasks(settings.mteb, run_dir / MTEB_RESULTS)
    return tasks


def score_run_tasks(run_dir: str | Path, tasks: list[Task], device: str = "auto", *,
                    progress: bool = False) -> dict[str, Any]:  # fmt: skip
    """The tasks scored on a finished run's teacher and students (torch; `distill eval` adds the exports), written
    into its summary.json as "tasks": what `distill run --tasks` shows right after training."""
    summary_file = Path(run_dir) / "summary.json"
    summary = read_summary(run_dir)
    teacher = run_teacher(summary, device)
    candidates = [
        teacher_candidate(teacher),
        *student_candidates(summary, Path(run_dir), None, None, None, teacher.placement.device, onnx=False),
    ]
    results = score_tasks(
        tasks,
        [e for c in candidates for e in task_encoders(c)],
        progress=progress,
        teacher_index=summary.get("index") == "teacher",
    )
    write_json(summary_file, {**read_json(summary_file), "tasks": results})
    write_run_cards(run_dir)  # NOTE: the cards carry the task figures, so they are written again with them
    return results


def evaluate_from_model(
    teacher: Teacher,
    targets: Targets,
    summary: dict[str, Any],
    run_dir: Path,
    settings: EvalSettings,
    *,
    extra_texts: list[str] | None = None,
    sts: STSEvaluator | None = None,
    other_domain: dict[str, list[str]] | None = None,
    tasks: list[Task] | None = None,
    progress: bool = False,
) -> tuple[dict, dict]:
    """The core of `evaluate_run`, on a teacher and targets already in memory.

    `other_domain`: named sets of held-out text of other forms (`distill.data.domains.other_domain_texts()`).
    `tasks`: the user's tasks (`eval.suite.parse_tasks`), scored on every model and backend into report["tasks"].
    """
    threads = settings.threads or torch.get_num_threads()
    torch.set_num_threads(threads)
    test_texts, test_vectors = targets.texts_and_vectors(Split.TEST)
    fidelity = {"test": FidelityEvaluator(test_texts, test_vectors)}
    if extra_texts:
        fidelity["text"] = FidelityEvaluator(extra_texts, teacher.sentence_vectors(extra_texts))
    other_domain = {name: texts for name, texts in (other_domain or {}).items() if texts}
    others = DomainFidelityEvaluator(other_domain, {n: teacher.sentence_vectors(t) for n, t in other_domain.items()})
    word_tasks: list[Any] = [WordSimilarityEvaluator(), AnalogyEvaluator(), PolarityProbe(), *([sts] if sts else [])]
    tokens = lambda student: token_fidelity(student, targets, targets.indices(Split.TEST))  # noqa: E731
    teacher_entry = teacher_candidate(teacher)
    if settings.teacher_onnx:
        add_teacher_onnx(teacher_entry, teacher, targets, run_dir / TEACHER_EXPORT, threads)
    candidates = [
        teacher_entry,
        *student_candidates(summary, run_dir, targets, tokens, threads, teacher.placement.device),
    ]
    if settings.baseline:
        candidates += peer_candidates(teacher, run_dir, settings.model2vec_peers)
    entries, word_vectors = {}, {}
    for candidate in tqdm(candidates, desc="eval", unit="model", disable=not progress):
        entries[candidate.name] = evaluate(candidate, fidelity, word_tasks, test_texts[: settings.latency_texts],
                                           settings)  # fmt: skip
        entries[candidate.name].update(others.of_teacher() if candidate.role == "teacher"
                                       else others(candidate.encode, candidate.same_space))  # fmt: skip
        word_vectors[candidate.name] = candidate.encode(plots.MAP_WORDS)
    task_results = (score_tasks(tasks, [e for c in candidates for e in task_encoders(c)], progress=progress,
                                teacher_index=summary.get("index") == "teacher")
                    if tasks else None)  # fmt: skip
    teacher_speed = entries["teacher"]["latency"]["torch"]
    for entry in entries.values():
        entry["latency"] = with_ratios(entry["latency"], teacher_speed)
    report = {
        "run": str(run_dir), "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": {"threads": threads, "processor": platform.processor() or platform.machine(),
                    "torch": torch.__version__},
        "data": {"test_texts": len(test_texts), "text_file": settings.text_file, "sts_file": settings.sts_file,
                 "latency_texts": min(settings.latency_texts, len(test_texts)),
                 "other_domain": {name: len(texts) for name, texts in other_domain.items()}},
        "settings": asdict(settings),
        "teacher": entries.pop("teacher"),
        "students": {c.name: entries[c.name] for c in candidates if c.role == "student"},
        "baselines": {c.name: entries[c.name] for c in candidates if c.role == "baseline"},
    }  # fmt: skip
    if task_results:
        # NOTE: which model and backend each column is, so the plot finds its speed in the entries
        task_results["backends"] = {c.column(b): {"model": c.name, "backend": b}
                                    for c in candidates for b in c.backends}  # fmt: skip
        report["tasks"] = task_results
        dims = {name: vectors.shape[1] for name, vectors in word_vectors.items()}
        report["frontier"] = size_frontier(report, candidates, tasks or [], targets, settings.vector_forms, dims,
                                           progress)  # fmt: skip
    return report, word_vectors


def peer_candidates(teacher: Teacher, run_dir: Path, peers: str) -> list[Candidate]:
    """model2vec's distillation of the teacher with its defaults, then each quantised variant `peers` names, each
    made once into its own folder under RUN/baseline/; none when model2vec is not installed."""
    out = []
    for variant in [Model2VecVariant(), *model2vec_peers(peers)]:
        candidate = model2vec_candidate(teacher, run_dir / "baseline" / variant.name, variant)
        if candidate is None:
            break
        out.append(candidate)
    return out


def size_frontier(report: dict[str, Any], candidates: list[Candidate], tasks: list[Task], targets: Targets,
                  vector_forms: str, dims: dict[str, int], progress: bool) -> dict[str, Any]:  # fmt: skip
    """report["frontier"] (`eval.frontier`): the models at their shipped bytes, and their vectors in each stored
    form, scored on the tasks, at the bytes one vector takes."""
    forms = parse_forms(vector_forms)
    basis = teacher_basis(targets) if forms else None
    return frontier_section(report, candidates, tasks, basis, forms, dims, progress=progress)


def evaluate(candidate: Candidate, fidelity: dict[str, FidelityEvaluator], tasks: list[Any], latency_texts: list[str],
             settings: EvalSettings) -> dict[str, Any]:  # fmt: skip
    """One model's entry: size, fidelity on each text set, tasks, and latency for each backend."""
    logger.info("evaluating %s", candidate.name)
    entry: dict[str, Any] = {
        "role": candidate.role, "params": candidate.params, "bytes": {"saved": candidate.bytes},
        "fidelity": {name: evaluator(candidate.encode, candidate.same_space) for name, evaluator in fidelity.items()},
        "tasks": {},
    }  # fmt: skip
    # NOTE: the other backends (ONNX fp32 / int8) on the test texts too, so a plot shows what int8 costs
    test = fidelity["test"]
    entry["fidelity_by_backend"] = {backend: test(lambda texts, encode=encode: encode(texts, 128), candidate.same_space)
                                    for backend, encode in list(candidate.backends.items())[1:]}  # fmt: skip
    if candidate.token_fidelity is not None:
        entry["fidelity"]["test"]["token_cosine_mean"] = candidate.token_fidelity()
    for task in tasks:
        entry["tasks"].update(task(candidate.encode))
    entry["latency"] = {backend: measure(encode, latency_texts, singles=settings.singles, repeats=settings.repeats,
                                         min_seconds=settings.min_seconds)
                        for backend, encode in candidate.backends.items()}  # fmt: skip
    entry["details"] = candidate.details
    for precision in ("fp32", "int8"):
        if f"onnx_{precision}_bytes" in candidate.details:
            entry["bytes"][f"onnx_{precision}"] = candidate.details[f"onnx_{precision}_bytes"]
    return entry


def read_texts(path: str | Path) -> list[str]:
    """Non-empty lines of a UTF-8 text file."""
    path = Path(path)
    if not path.is_file():
        raise DistillError(f"text file {str(path)!r} does not exist")
    try:
        texts = [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    except UnicodeDecodeError as e:
        raise DistillError(f"text file {str(path)!r} is not UTF-8 text: {e.reason} at byte {e.start}") from e
    if not texts:
        raise DistillError(f"text file {str(path)!r} has no text (every line is empty)")
    return texts


def write_report(run_dir: str | Path, report: dict[str, Any], word_vectors: dict[str, np.ndarray]) -> list[Path]:
    """report.json, report.md and the plots, written atomically into the run folder; returns the paths."""
    run_dir = Path(run_dir)
    write_json(run_dir / REPORT_JSON, report)
    written = [run_dir / REPORT_JSON, *plots.draw_all(report, word_vectors, run_dir)]
    with atomic_path(run_dir / REPORT_MD) as tmp:
        tmp.write_text(render_markdown(report), encoding="utf-8")
    return [*written, run_dir / REPORT_MD]
