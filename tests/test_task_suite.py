"""The task suite: classification, clustering and STS evaluators on hand-checked cases, `--tasks` specs, the default
suite, shares of the teacher's scores, and the report's first table."""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from distill.errors import DistillError
from eval.classification import ClassificationEvaluator, read_split_folder
from eval.clustering import ClusteringEvaluator
from eval.encoders import TaskEncoder
from eval.markdown import task_section
from eval.scoring import score_tasks, shares
from eval.sts import read_pairs
from eval.suite import Task, detect_kind, parse_tasks
from tests.test_retrieval import TOPICS, topic_encode, write_beir


def constant(texts: list[str]) -> np.ndarray:
    return np.ones((len(texts), 4))


def labelled(n: int, offset: int = 0) -> pd.DataFrame:
    """n texts, each about one topic (named in it), labelled with that topic, the topics taking turns."""
    rows = [(f"note {offset + i} about {TOPICS[i % 4]} today", TOPICS[i % 4]) for i in range(n)]
    return pd.DataFrame(rows, columns=["text", "label"])


def write_tasks(folder: Path) -> Path:
    """A folder holding one task of each kind."""
    write_beir(folder / "qa")
    (folder / "topics").mkdir(parents=True)
    labelled(40).to_csv(folder / "topics" / "train.csv", index=False)
    labelled(20, offset=100).to_json(folder / "topics" / "test.jsonl", orient="records", lines=True)
    labelled(40, offset=200).to_csv(folder / "clusters.csv", index=False)
    pairs = [("cats nap", "cats purr", 5), ("cats nap", "ships sail", 0), ("rain falls", "rain pours", 4),
             ("dogs bark", "ships sail", 1), ("ships sail", "ships float", 5)]  # fmt: skip
    (folder / "pairs.tsv").write_text("".join(f"{a}\t{b}\t{s}\n" for a, b, s in pairs))
    (folder / "README.md").write_text("not a task")
    return folder


def test_classification_is_perfect_on_separable_vectors_and_chance_on_constant_ones(tmp_path: Path) -> None:
    evaluator = read_split_folder(write_tasks(tmp_path) / "topics")
    assert evaluator.size == {"train": 40, "test": 20, "classes": 4}
    assert evaluator(topic_encode) == {"accuracy": pytest.approx(100.0), "macro_f1": pytest.approx(100.0)}
    two = ClassificationEvaluator((["a", "b", "c", "d"], ["x", "y", "x", "y"]), (["e", "f"], ["x", "y"]))
    # one class predicted for every text: half right; F1 2/3 for that class and 0 for the other
    assert two(constant) == {"accuracy": pytest.approx(50.0), "macro_f1": pytest.approx(100 / 3)}


def test_clustering_v_measure_is_100_on_separated_topics_and_low_on_noise(tmp_path: Path) -> None:
    frame = labelled(40)
    evaluator = ClusteringEvaluator(list(frame["text"]), list(frame["label"]), seeds=3)
    assert evaluator.k == 4 and evaluator(topic_encode)["v_measure"] == pytest.approx(100.0)
    noise = evaluator(lambda texts: np.random.default_rng(0).normal(size=(len(texts), 8)))["v_measure"]
    assert 0 <= noise < 40
    with pytest.raises(DistillError, match="at least 2 labels"):
        ClusteringEvaluator(["a", "b"], ["x", "x"])


def test_sts_reads_tsv_and_tables_alike(tmp_path: Path) -> None:
    folder = write_tasks(tmp_path)
    tsv = read_pairs(folder / "pairs.tsv")
    first, second = tsv.first, tsv.second
    pd.DataFrame({"sentence1": first, "sentence2": second, "score": tsv.gold}).to_parquet(tmp_path / "pairs.parquet")
    table = read_pairs(tmp_path / "pairs.parquet")
    assert table.size == {"pairs": 5} and table(topic_encode) == tsv(topic_encode)
    assert tsv(topic_encode)["spearman"] > 80  # same-topic pairs are the high-scored ones
    pd.DataFrame({"sentence1": ["a", "b"], "sentence2": ["c", "d"], "score": ["x", "y"]}).to_csv(tmp_path / "bad.csv")
    with pytest.raises(DistillError, match="must hold numbers"):
        read_pairs(tmp_path / "bad.csv")


def test_a_spec_names_tasks_by_kind_and_path_by_layout_or_a_folder_of_several(tmp_path: Path) -> None:
    folder = write_tasks(tmp_path / "tasks")
    kinds = {t.name: t.kind for t in parse_tasks([str(folder)])}
    assert kinds == {"qa": "retrieval", "topics": "classification", "clusters": "clustering", "pairs": "sts"}
    explicit = parse_tasks(
        [f"retrieval:{folder / 'qa'}, sts:{folder / 'pairs.tsv'}", f"clustering:{folder / 'clusters.csv'}"]
    )
    assert [(t.name, t.kind, t.main) for t in explicit] == [
        ("qa", "retrieval", "ndcg_at_10"), ("pairs", "sts", "spearman"), ("clusters", "clustering", "v_measure")
    ]  # fmt: skip
    assert [t.name for t in parse_tasks([f"{folder / 'qa'},{folder / 'qa'}"])] == ["qa", "qa-2"]
    assert detect_kind(folder / "README.md") is None and parse_tasks(["none"]) == []


@pytest.mark.parametrize(("spec", "message"), [("missing", "does not exist"), ("README.md", "is no task"),
                                               ("empty", "no task in"), ("sts:qa", "STS file")])  # fmt: skip
def test_a_bad_spec_is_one_clear_error(tmp_path: Path, spec: str, message: str) -> None:
    folder = write_tasks(tmp_path / "tasks")
    (folder / "empty").mkdir()
    kind, _, path = spec.rpartition(":")
    with pytest.raises(DistillError, match=message):
        parse_tasks([f"{kind}:{folder / path}" if kind else str(folder / path)])


def test_the_default_suite_ships_offline_and_is_labelled_small() -> None:
    tasks = {t.name: t for t in parse_tasks(["default"])}
    assert {name: t.kind for name, t in tasks.items()} == {
        "chat-qa": "retrieval", "polarity": "classification", "chat-topics": "clustering"
    }  # fmt: skip
    assert all(t.small for t in tasks.values())
    qa = tasks["chat-qa"].evaluator.data
    assert qa.size["queries"] > 500 and qa.size["documents"] > 500
    assert all(set(judged) <= set(qa.documents) for judged in qa.qrels.values())
    polarity = tasks["polarity"].evaluator
    assert polarity.size == {"train": 100, "test": 100, "classes": 2}
    assert sorted(polarity.test_labels).count("positive") == 50
    assert tasks["chat-topics"].size["clusters"] >= 10


@pytest.fixture(scope="module")
def section(tmp_path_factory: pytest.TempPathFactory) -> dict:
    folder = write_tasks(tmp_path_factory.mktemp("tasks"))
    tasks = parse_tasks([str(folder)])
    teacher = TaskEncoder("teacher", topic_encode)
    noisy = TaskEncoder(
        "student", lambda t: topic_encode(t) + 0.6 * np.random.default_rng(len(t)).normal(size=(len(t), 4))
    )
    rotation = np.linalg.qr(np.random.default_rng(0).normal(size=(4, 4)))[0]  # its own axes
    peer = TaskEncoder("peer", lambda t: noisy.encode(t) @ rotation, same_space=False)
    return score_tasks(tasks, [teacher, noisy, peer])


def test_the_teacher_scores_100_percent_of_itself_on_every_row(section: dict) -> None:
    assert section["models"] == ["teacher", "student", "peer"]
    assert all(row["shares"]["teacher"] == pytest.approx(1.0) for row in section["rows"])
    assert section["mean_share"]["teacher"] == pytest.approx(1.0)
    assert 0 < section["mean_share"]["student"] < 1.0 and 0 < section["mean_share"]["peer"] < 1.0
    metrics = {(row["task"], row["metric"]) for row in section["rows"]}
    assert {("qa", "ndcg_at_10_teacher_index"), ("topics", "macro_f1"), ("clusters", "v_measure")} <= metrics
    index = next(r for r in section["rows"] if r["metric"] == "recall_at_100_teacher_index")
    assert (
        index["scores"]["teacher"]
        == next(r for r in section["rows"] if r["metric"] == "recall_at_100")["scores"]["teacher"]
    )
    assert index["scores"]["peer"] is None and index["shares"]["peer"] is None  # its own space: no teacher index
    main = [row for row in section["rows"] if row["main"]]
    assert len(main) == 4 and section["mean_share"]["student"] == pytest.approx(
        np.mean([row["shares"]["student"] for row in main])
    )


def test_a_share_needs_a_positive_teacher_score() -> None:
    assert shares({"teacher": 50.0, "a": 25.0, "b": None}, "teacher") == {"teacher": 1.0, "a": 0.5, "b": None}
    assert shares({"teacher": -3.0, "a": 2.0}, "teacher") == {"teacher": None, "a": None}


def test_the_task_table_comes_first_in_the_report_and_fidelity_second(section: dict) -> None:
    lines = task_section({"tasks": section})
    assert lines[0] == "## What each student keeps"
    header = next(line for line in lines if line.startswith("| task |"))
    assert header == "| task | metric | teacher | student | peer |"
    assert any(line.startswith("| qa | nDCG@10, teacher index | ") for line in lines)
    table = [line for line in lines if line.startswith("|")]
    assert table[-1].startswith("| mean share | main metrics | 100% | ")  # the table's last row
    assert task_section({}) == []
    json.dumps(section)  # report.json and summary.json hold it as it is


def test_the_task_table_marks_the_small_suite(section: dict) -> None:
    small = {**section, "tasks": [{**t, "small": True} for t in section["tasks"]]}
    assert any(line.startswith("| qa (small) | nDCG@10 |") for line in task_section({"tasks": small}))
    assert Task("x", "sts", lambda e: {"spearman": 1.0}, "here").main == "spearman"


def test_passages_spec_asks_a_sentence_to_find_the_passage_it_was_taken_from(tmp_path: Path) -> None:
    from eval.cloze import cloze_retrieval

    topics = ["river", "violin", "budget", "football", "museum", "frog"]
    lines = [" ".join(f"Sentence {k} of the {t} story number {i} goes here." for k in range(4))
             for i in range(10) for t in topics]  # fmt: skip
    path = tmp_path / "passages.txt"
    path.write_text("\n".join(lines) + "\n")
    data = cloze_retrieval(path, queries=20)
    assert data.size == {"documents": 60, "queries": 20}
    for query, judged in data.qrels.items():
        (document,) = judged
        assert data.queries[query] not in data.documents[document]  # taken out of its passage
        assert data.queries[query] in lines[int(document[1:])]
    (task,) = parse_tasks([f"passages:{path}"])
    assert task.kind == "retrieval" and task.name == "passages-cloze" and not task.small

    def by_topic(texts: list[str]) -> np.ndarray:  # a model that knows only each text's topic
        return np.array([[float(t in text) for t in topics] for text in texts]) + 1e-3

    scores = task.evaluator(TaskEncoder(name="topics", encode=by_topic))
    assert 0 < scores["ndcg_at_10"] < 100  # the topic narrows 60 passages to 10; the sentence number cannot
    path.write_text("One sentence only here.\nAnother short line now.\n")
    with pytest.raises(DistillError, match="no passage of three sentences"):
        cloze_retrieval(path)
