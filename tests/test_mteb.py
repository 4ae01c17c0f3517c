"""`--mteb`: MTEB's own evaluation through the encoder wrapper, on tasks defined from local files (no download)."""

import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from distill.errors import DistillError
from eval.encoders import TaskEncoder
from eval.retrieval import RetrievalData, RetrievalEvaluator, read_beir
from eval.scoring import score_tasks
from eval.sts import read_pairs
from tests.test_retrieval import topic_encode, write_beir
from tests.test_task_suite import write_tasks

mteb = pytest.importorskip("mteb")
from datasets import Dataset, DatasetDict  # noqa: E402
from mteb.abstasks.retrieval import AbsTaskRetrieval  # noqa: E402
from mteb.abstasks.retrieval_dataset_loaders import RetrievalSplitData  # noqa: E402
from mteb.abstasks.sts import AbsTaskSTS  # noqa: E402
from mteb.abstasks.task_metadata import TaskMetadata  # noqa: E402

from eval.mteb_tasks import mteb_tasks, task_of  # noqa: E402

LOCAL = {"description": "A task read from local files.", "reference": None, "dataset": {"path": "local/none",
         "revision": "1"}, "category": "t2t", "eval_splits": ["test"], "eval_langs": ["eng-Latn"], "date": None,
         "dialect": None, "domains": None, "task_subtypes": None, "license": None, "annotations_creators": None,
         "modalities": ["text"], "sample_creation": None, "bibtex_citation": None}  # fmt: skip


def local_retrieval(data: RetrievalData) -> AbsTaskRetrieval:
    class LocalRetrieval(AbsTaskRetrieval):
        metadata = TaskMetadata(type="Retrieval", name="LocalRetrieval", main_score="ndcg_at_10", **LOCAL)

        def load_data(self, num_proc: int | None = None, **kwargs: Any) -> None:
            # NOTE: documents given as text alone: read_beir has joined title and text already
            corpus = Dataset.from_list([{"id": d, "title": "", "text": t} for d, t in data.documents.items()])
            queries = Dataset.from_list([{"id": q, "text": t} for q, t in data.queries.items()])
            split = RetrievalSplitData(queries=queries, corpus=corpus, relevant_docs=data.qrels, top_ranked=None)
            self.dataset = {"default": {"test": split}}
            self.data_loaded = True

    return LocalRetrieval()


def local_sts(path: Path) -> AbsTaskSTS:
    pairs = read_pairs(path)

    class LocalSTS(AbsTaskSTS):
        metadata = TaskMetadata(type="STS", name="LocalSTS", main_score="cosine_spearman", **LOCAL)
        min_score, max_score = 0, 5

        def load_data(self, num_proc: int | None = None, **kwargs: Any) -> None:
            columns = {"sentence1": pairs.first, "sentence2": pairs.second, "score": pairs.gold.tolist()}
            self.dataset = DatasetDict({"test": Dataset.from_dict(columns)})
            self.data_loaded = True

    return LocalSTS()


def recording(calls: dict[str, int], role: str) -> Any:
    def encode(texts: list[str]) -> np.ndarray:
        calls[role] = calls.get(role, 0) + len(texts)
        return topic_encode(texts)

    return encode


def test_mteb_scores_a_local_retrieval_task_as_the_suite_does_with_the_models_prompts(tmp_path: Path) -> None:
    data = read_beir(write_beir(tmp_path / "beir"))
    calls: dict[str, int] = {}
    teacher = TaskEncoder("teacher", topic_encode, query=recording(calls, "query"),
                          document=recording(calls, "document"), identity=lambda: "teacher-v1")  # fmt: skip
    task = task_of(local_retrieval(data), tmp_path / "mteb")
    assert (task.kind, task.main) == ("mteb", "ndcg_at_10")
    ours = RetrievalEvaluator(data)(TaskEncoder("plain", topic_encode))["ndcg_at_10"]
    assert task.evaluator(teacher) == {"ndcg_at_10": pytest.approx(ours, abs=1e-3)}  # MTEB rounds to 5 places
    assert calls == {"query": 3, "document": 4}  # MTEB asked the model's own query and document encodes
    files = list((tmp_path / "mteb" / "results" / "distill__teacher").rglob("LocalRetrieval.json"))
    assert len(files) == 1 and json.loads(files[0].read_text())["task_name"] == "LocalRetrieval"  # MTEB's own file
    task.evaluator(teacher)
    assert calls == {"query": 3, "document": 4}  # unchanged model: MTEB read its own result back


def test_mteb_sts_agrees_with_the_suites_spearman_and_joins_the_same_table(tmp_path: Path) -> None:
    pairs_file = write_tasks(tmp_path / "tasks") / "pairs.tsv"
    task = task_of(local_sts(pairs_file), tmp_path / "mteb")
    teacher = TaskEncoder("teacher", topic_encode)
    student = TaskEncoder(
        "student", lambda t: topic_encode(t) + 0.3 * np.random.default_rng(len(t)).normal(size=(len(t), 4))
    )
    section = score_tasks([task], [teacher, student])
    (row,) = section["rows"]
    assert row["task"] == "LocalSTS" and row["metric"] == "cosine_spearman" and row["shares"]["teacher"] == 1.0
    assert row["scores"]["teacher"] == pytest.approx(read_pairs(pairs_file)(topic_encode)["spearman"], abs=1e-6)
    assert row["scores"]["student"] is not None


def test_a_task_whose_data_cannot_be_fetched_is_one_line(tmp_path: Path) -> None:
    task = local_sts(write_tasks(tmp_path / "tasks") / "pairs.tsv")

    def offline(*args: Any, **kwargs: Any) -> None:
        raise ConnectionError("Couldn't reach 'mteb/local' on the Hub (LocalEntryNotFoundError)")

    task.load_data = offline  # type: ignore[method-assign]
    with pytest.raises(DistillError, match="could not be downloaded and is not cached \\(no network\\?\\)"):
        task_of(task, tmp_path)
    with pytest.raises(DistillError, match="MTEB has no task 'NoSuchTask'"):
        mteb_tasks(["NoSuchTask"], tmp_path)


def test_without_the_mteb_extra_the_eval_says_how_to_install_it(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setitem(sys.modules, "mteb", None)  # import mteb now raises ImportError
    with pytest.raises(DistillError, match=r"pip install 'distill-embeddings\[mteb\]'"):
        mteb_tasks(["STSBenchmark"], tmp_path)


def test_eval_settings_read_mteb_names_before_any_model_loads(tmp_path: Path) -> None:
    from eval.report import EvalSettings, run_tasks

    settings = EvalSettings(mteb=["NoSuchTask,AlsoMissing"], tasks=["none"])
    assert settings.mteb == ["NoSuchTask", "AlsoMissing"]
    with pytest.raises(DistillError, match="MTEB has no task 'NoSuchTask'"):
        run_tasks(settings, {"targets": str(tmp_path / "cache" / "targets-x")}, tmp_path)
