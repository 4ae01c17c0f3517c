"""`distill eval --mteb TASK[,TASK...]`: MTEB's own tasks on the teacher and every model and backend.

Each task becomes a `Task` of kind "mteb" whose evaluator runs `mteb.evaluate` on the model through
`MtebEncoder`; MTEB writes its own result files into `out` (`<out>/results/distill__<model>/<revision>/`,
the revision a hash of the model's files, so a second eval of an unchanged model reads them back), and
the task's main score (x 100) joins the suite's table. The mteb package is an optional extra; without
it, or without the task's data (downloaded once from the Hugging Face hub), the eval stops with one line.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from distill.errors import DistillError
from eval.encoders import Encode, TaskEncoder, as_encoder, fingerprint
from eval.suite import Task

logger = logging.getLogger(__name__)

INSTALL = "pip install 'distill-embeddings[mteb]'"


def mteb_tasks(names: list[str], out: Path) -> list[Task]:
    """MTEB's tasks by name, their data loaded now (so a missing network fails before any model is loaded)."""
    mteb = _mteb()
    tasks = []
    for name in names:
        try:
            (task,) = mteb.get_tasks(tasks=[name])
        except (KeyError, ValueError) as e:
            raise DistillError(f"MTEB has no task {name!r} (names as in mteb.get_tasks(), for example STSBenchmark, "
                               "SciFact, Banking77Classification)") from e  # fmt: skip
        tasks.append(task_of(task, out))
    return tasks


def task_of(task: Any, out: Path) -> Task:
    """One MTEB task (an `mteb.AbsTask`, possibly defined from local files) as a suite `Task`, its data loaded."""
    name = task.metadata.name
    try:
        task.load_data()
    except (OSError, ConnectionError, TimeoutError) as e:
        raise DistillError(f"MTEB task {name}: its data could not be downloaded and is not cached (no network?): "
                           f"{str(e).splitlines()[0] if str(e) else type(e).__name__}") from e  # fmt: skip
    return Task(name, "mteb", MtebEvaluator(task, out), f"MTEB {task.metadata.type} task {name}",
                main=task.metadata.main_score)  # fmt: skip


class MtebEvaluator:
    """`__call__(encoder) -> {main score: x 100}`: the task run by MTEB itself on the model."""

    def __init__(self, task: Any, out: Path) -> None:
        self.task, self.out = task, Path(out)

    def __call__(self, model: TaskEncoder | Encode) -> dict[str, float]:
        mteb = _mteb()
        from eval.mteb_encoder import MtebEncoder

        encoder = as_encoder(model)
        revision = fingerprint([encoder.identity()])[:12] if encoder.identity else "unversioned"
        result = mteb.evaluate(
            MtebEncoder(encoder, revision), self.task, cache=mteb.ResultCache(str(self.out)),
            # NOTE: a model with an identity is filed under it, so its results are read back while it is unchanged;
            # one without is scored again every time.
            overwrite_strategy="only-missing" if encoder.identity else "always",
            show_progress_bar=False, encode_kwargs={"batch_size": 128, "show_progress_bar": False},
        )  # fmt: skip
        (task_result,) = result.task_results
        return {self.task.metadata.main_score: 100 * float(task_result.get_score())}


def _mteb() -> Any:
    try:
        import mteb
    except ImportError as e:
        raise DistillError(f"--mteb needs the mteb package, which is not installed: {INSTALL}") from e
    return mteb
