"""Retrieval: the ranking metrics against a worked example and against pytrec_eval, BEIR folders, the vector cache."""

import json
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from distill.errors import DistillError
from eval.encoders import TaskEncoder, VectorCache
from eval.fidelity import unit
from eval.ranking import ndcg, ranking_metrics, recall, reciprocal_rank, search
from eval.retrieval import RetrievalData, RetrievalEvaluator, read_beir

QRELS = {"d1": 0, "d2": 2, "d3": 1, "d4": 3}


def test_ndcg_recall_and_mrr_of_a_worked_example() -> None:
    ranked = ["d1", "d2", "d3", "d5"]
    # DCG  = 0/log2(2) + 2/log2(3) + 1/log2(4) + 0 = 1.261860 + 0.5 = 1.761860
    # IDCG = 3/log2(2) + 2/log2(3) + 1/log2(4)     = 3 + 1.261860 + 0.5 = 4.761860
    assert ndcg(ranked, QRELS, 10) == pytest.approx(1.761860 / 4.761860, abs=1e-6)
    assert ndcg(ranked, QRELS, 1) == 0.0  # d1 is judged, but not relevant
    assert ndcg(["d4", "d2", "d3"], QRELS, 10) == pytest.approx(1.0)  # the ideal order
    assert recall(ranked, QRELS, 100) == pytest.approx(2 / 3)  # d2, d3 of d2, d3, d4 (d1's 0 is not relevant)
    assert recall(ranked, QRELS, 2) == pytest.approx(1 / 3)
    assert reciprocal_rank(ranked, QRELS, 10) == 0.5 and reciprocal_rank(ranked, QRELS, 1) == 0.0
    assert ndcg(ranked, {"d9": 0}, 10) == 0.0 and recall(ranked, {"d9": 0}, 100) == 0.0  # nothing relevant: 0
    metrics = ranking_metrics({"q1": ranked, "q2": ["d4"], "unjudged": ["d1"]}, {"q1": QRELS, "q2": QRELS})
    assert metrics["mrr_at_10"] == pytest.approx(100 * (0.5 + 1.0) / 2)  # the unjudged query does not count


def test_search_ranks_by_score_and_breaks_ties_by_the_larger_id_as_trec_eval() -> None:
    documents = unit(np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0], [0.6, 0.8]]))  # a and c tie
    ranked = search(unit(np.array([[1.0, 0.0]])), documents, ["a", "b", "c", "d"], 2, ["q"])
    assert ranked == {"q": ["c", "a"]}  # c > a: the tie at the cut is settled by id, not by position
    assert search(unit(np.array([[1.0, 0.0]])), documents, ["a", "b", "c", "d"], 10, ["q"])["q"] == ["c", "a", "d", "b"]


def _case(seed: int) -> tuple[np.ndarray, np.ndarray, list[str], list[str], dict[str, dict[str, int]]]:
    rng = np.random.default_rng(seed)
    documents = unit(rng.normal(size=(150, 8)))
    documents[1::7] = documents[::7][: len(documents[1::7])]  # duplicates: tied scores
    queries = unit(rng.normal(size=(30, 8)))
    ids = [f"doc{i}" for i in rng.permutation(150)]
    qrels = {f"q{q}": {ids[d]: int(rng.integers(0, 4)) for d in rng.choice(150, size=6, replace=False)}
             for q in range(30)}  # fmt: skip
    return queries, documents, ids, [f"q{q}" for q in range(30)], qrels


@pytest.mark.parametrize("seed", [0, 1])
def test_metrics_agree_with_pytrec_eval(seed: int) -> None:
    pytrec_eval = pytest.importorskip("pytrec_eval")
    queries, documents, ids, query_ids, qrels = _case(seed)
    ours = ranking_metrics(search(queries, documents, ids, 100, query_ids), qrels)
    scores = queries @ documents.T
    run = {q: {d: float(s) for d, s in zip(ids, row, strict=True)} for q, row in zip(query_ids, scores, strict=True)}
    full = pytrec_eval.RelevanceEvaluator(qrels, {"ndcg_cut.10", "recall.100"}).evaluate(run)
    top10 = {q: dict(sorted(docs.items(), key=lambda x: (x[1], x[0]), reverse=True)[:10]) for q, docs in run.items()}
    rr = pytrec_eval.RelevanceEvaluator(qrels, {"recip_rank"}).evaluate(top10)
    assert ours["ndcg_at_10"] == pytest.approx(100 * np.mean([v["ndcg_cut_10"] for v in full.values()]), abs=1e-9)
    assert ours["recall_at_100"] == pytest.approx(100 * np.mean([v["recall_100"] for v in full.values()]), abs=1e-9)
    assert ours["mrr_at_10"] == pytest.approx(100 * np.mean([v["recip_rank"] for v in rr.values()]), abs=1e-9)


def write_beir(folder: Path) -> Path:
    """Four documents about four things, three queries; q3's only judged document is judged not relevant."""
    folder.mkdir(parents=True, exist_ok=True)
    docs = [("d1", "Cats", "cats purr and sleep"), ("d2", "", "dogs bark at night"),
            ("d3", "Rain", "rain falls in spring"), ("d4", "Ships", "ships sail the sea")]  # fmt: skip
    (folder / "corpus.jsonl").write_text(
        "".join(json.dumps({"_id": i, "title": t, "text": x}) + "\n" for i, t, x in docs)
    )
    queries = [("q1", "cats"), ("q2", "rain"), ("q3", "ships"), ("q4", "unjudged")]
    (folder / "queries.jsonl").write_text("".join(json.dumps({"_id": i, "text": t}) + "\n" for i, t in queries))
    (folder / "qrels").mkdir(exist_ok=True)
    (folder / "qrels" / "test.tsv").write_text(
        "query-id\tcorpus-id\tscore\nq1\td1\t1\nq2\td3\t2\nq2\td2\t1\nq3\td4\t0\n"
    )
    return folder


TOPICS = ["cats", "dogs", "rain", "ships"]


def topic_encode(texts: list[str]) -> np.ndarray:
    """A text's vector is the one-hot of the first topic word it holds, plus a little noise of its own."""
    out = []
    for text in texts:
        hit = next((i for i, topic in enumerate(TOPICS) if topic in text.lower()), None)
        vector = 0.01 * np.random.default_rng(zlib.crc32(text.encode())).normal(size=4)
        if hit is not None:
            vector[hit] += 1.0
        out.append(vector)
    return np.array(out)


def test_a_beir_folder_reads_title_and_text_as_one_document(tmp_path: Path) -> None:
    data = read_beir(write_beir(tmp_path / "beir"))
    assert data.documents["d1"] == "Cats cats purr and sleep" and data.documents["d2"] == "dogs bark at night"
    assert set(data.queries) == {"q1", "q2", "q3"}  # q4 has no judgements
    assert data.qrels["q2"] == {"d3": 2, "d2": 1}
    scores = RetrievalEvaluator(data)(topic_encode)
    # q1: d1 first (1.0); q2: d3 first, d2 relevant too but ranked low; q3: nothing relevant (0)
    assert scores["mrr_at_10"] == pytest.approx(100 * 2 / 3)
    assert 0 < scores["ndcg_at_10"] < 100 * 2 / 3 and scores["recall_at_100"] == pytest.approx(100 * 2 / 3)


@pytest.mark.parametrize(
    ("broken", "message"),
    [("corpus.jsonl", "no corpus.jsonl"), ("qrels/test.tsv", "no qrels/test.tsv"), ("bad-qrels", "test.tsv line 2"),
     ("bad-json", "corpus.jsonl line 1 is not JSON")],
)  # fmt: skip
def test_a_broken_beir_folder_is_one_clear_error(tmp_path: Path, broken: str, message: str) -> None:
    folder = write_beir(tmp_path / "beir")
    if broken == "bad-qrels":
        (folder / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\nq1\td1\tvery\n")
    elif broken == "bad-json":
        (folder / "corpus.jsonl").write_text("{not json\n")
    else:
        (folder / broken).unlink()
    with pytest.raises(DistillError, match=message):
        read_beir(folder)


def test_the_teacher_index_mode_scores_a_students_queries_against_the_teachers_documents(tmp_path: Path) -> None:
    data = read_beir(write_beir(tmp_path / "beir"))
    evaluator = RetrievalEvaluator(data)
    teacher = TaskEncoder("teacher", topic_encode)
    # a student that embeds documents badly (noise) but queries as the teacher does
    student = TaskEncoder(
        "student", lambda texts: topic_encode(texts), document=lambda texts: topic_encode(["x"] * len(texts))
    )
    scores = evaluator(student, index=teacher)
    own = evaluator(teacher)
    assert scores["ndcg_at_10_teacher_index"] == pytest.approx(own["ndcg_at_10"])  # its queries are the teacher's
    assert scores["ndcg_at_10"] < own["ndcg_at_10"]  # its own index is bad
    other_space = TaskEncoder("peer", topic_encode, same_space=False)
    assert "ndcg_at_10_teacher_index" not in evaluator(other_space, index=teacher)


def test_prompts_for_queries_and_documents_are_used_where_the_model_has_them(tmp_path: Path) -> None:
    data = read_beir(write_beir(tmp_path / "beir"))
    seen: dict[str, list[str]] = {"query": [], "document": []}

    def with_prompt(role: str) -> Callable[[list[str]], np.ndarray]:
        def encode(texts: list[str]) -> np.ndarray:
            seen[role].extend(texts)
            return topic_encode(texts)

        return encode

    RetrievalEvaluator(data)(
        TaskEncoder("teacher", topic_encode, query=with_prompt("query"), document=with_prompt("document"))
    )
    assert sorted(seen["query"]) == ["cats", "rain", "ships"] and len(seen["document"]) == 4


def test_a_second_eval_reads_document_vectors_from_the_cache(tmp_path: Path) -> None:
    folder = write_beir(tmp_path / "beir")
    calls: list[int] = []

    def documents(texts: list[str]) -> np.ndarray:
        calls.append(len(texts))
        return topic_encode(texts)

    encoder = TaskEncoder("teacher", topic_encode, document=documents, identity=lambda: "teacher-v1")
    cache = VectorCache(tmp_path / "cache")
    first = RetrievalEvaluator(read_beir(folder), cache)(encoder)
    second = RetrievalEvaluator(read_beir(folder), cache)(encoder)
    assert calls == [4] and first == second  # the second eval embedded no document
    assert len(list((tmp_path / "cache").glob("*.npy"))) == 1 and not list((tmp_path / "cache").glob(".*"))
    RetrievalEvaluator(read_beir(folder), cache)(
        TaskEncoder("new", topic_encode, document=documents, identity=lambda: "v2")
    )
    assert calls == [4, 4]  # another model: another key
    with (folder / "corpus.jsonl").open("a") as f:
        f.write(json.dumps({"_id": "d5", "title": "", "text": "more cats"}) + "\n")
    RetrievalEvaluator(read_beir(folder), cache)(encoder)
    assert calls == [4, 4, 5]  # a changed corpus file: another key


def test_retrieval_data_needs_documents_and_judged_queries() -> None:
    with pytest.raises(DistillError, match="at least one query"):
        RetrievalData({"d1": "text"}, {"q1": "query"}, {"q2": {"d1": 1}})
