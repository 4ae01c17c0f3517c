"""A student for the user's own collection: documents read as users hold them (a BEIR folder, a table with titles, a
folder of files), long documents cut into passages whole, general text mixed in at a stated share, retrieval on
the collection's own held-out passages scored with no labels, and students trained for a teacher's index."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from distill.cli.commands import main
from distill.data.corpus import load_corpus
from distill.errors import DistillError
from distill.runfolder import read_summary
from distill.training.config import RunConfig, build_config, read_toml
from distill.training.pipeline import load_store, with_mix
from eval.collection import corpus_queries, own_cloze
from eval.scoring import INDEX_SUFFIX, results_section
from eval.suite import RunCorpus, Task, parse_tasks
from tests.families import save_teacher, tiny_teacher


def write_beir(folder: Path, sentences: list[str], documents: int = 40) -> Path:
    """A BEIR folder of `documents` documents of 5 sentences each, titled, with 3 judged queries."""
    folder.mkdir(parents=True)
    with (folder / "corpus.jsonl").open("w") as f:
        for i in range(documents):
            text = " ".join(sentences[(5 * i + k) % len(sentences)] for k in range(5))
            f.write(json.dumps({"_id": f"d{i}", "title": f"Document number {i}", "text": text}) + "\n")
    queries = [json.dumps({"_id": f"q{i}", "text": sentences[(5 * i) % len(sentences)][:30]}) for i in range(3)]
    (folder / "queries.jsonl").write_text("\n".join(queries))
    (folder / "qrels").mkdir()
    (folder / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\n" + "".join(f"q{i}\td{i}\t1\n"
                                                                                        for i in range(3)))  # fmt: skip
    return folder


def test_a_beir_folder_a_titled_table_and_a_folder_of_documents_are_read_as_documents(tmp_path: Path) -> None:
    beir = write_beir(tmp_path / "beir", [f"Sentence {i} has four words." for i in range(10)], documents=2)
    assert load_corpus(str(beir))[0].startswith("Document number 0 Sentence 0 has four words. Sentence 1")
    assert load_corpus(str(beir / "corpus.jsonl")) == load_corpus(str(beir))
    assert load_corpus(str(beir), title_column=None)[0].startswith("Sentence 0")
    (tmp_path / "t.jsonl").write_text(json.dumps({"title": "A title", "text": "the text"}) + "\n"
                                      + json.dumps({"title": None, "text": "untitled"}) + "\n")  # fmt: skip
    assert load_corpus(str(tmp_path / "t.jsonl")) == ["A title the text", "untitled"]
    docs = tmp_path / "docs"
    (docs / "sub").mkdir(parents=True)
    (docs / "a.md").write_text("# Heading\n\nFirst paragraph.\nSecond line.\n")
    (docs / "sub" / "b.txt").write_text("Another document.\n")
    (docs / "skip.pdf").write_bytes(b"%PDF")
    assert load_corpus(str(docs), documents=True) == ["# Heading  First paragraph. Second line.", "Another document."]
    assert load_corpus(str(docs)) == ["Another document."]  # without --documents: the lines of its .txt files


def test_a_long_document_keeps_its_length_when_it_is_to_be_cut(tmp_path: Path) -> None:
    document = " ".join(f"This is sentence number {i} of a very long document." for i in range(1000))  # 50k chars
    (tmp_path / "long.jsonl").write_text(json.dumps({"text": document}) + "\n")
    lengths = {}
    for passages in ("whole", "cut"):
        config = RunConfig(corpus=str(tmp_path / "long.jsonl"), passages=passages, cache_dir=str(tmp_path / "cache"))
        lengths[passages] = len(load_store(config)[0])
    assert lengths == {"whole": 4000, "cut": len(document)}


def test_general_text_is_mixed_in_at_the_share_asked(tmp_path: Path) -> None:
    from distill.data.targets import store_texts

    (tmp_path / "general.txt").write_text("\n".join(f"general sentence {i}" for i in range(500)))
    corpus = store_texts([f"collection passage {i}" for i in range(90)], tmp_path / "cache")
    config = RunConfig(mix=str(tmp_path / "general.txt"), mix_share=0.25, cache_dir=str(tmp_path / "cache"))
    mixed = with_mix(corpus, config)
    assert len(mixed) == 120 and list(mixed)[:90] == list(corpus)  # 30 of 120 are general text
    assert all(text.startswith("general") for text in list(mixed)[90:])
    assert list(with_mix(corpus, config)) == list(mixed)  # the same texts each time
    assert len(with_mix(corpus, RunConfig(mix=str(tmp_path / "general.txt"), mix_share=0.9,
                                          cache_dir=str(tmp_path / "cache")))) == 590  # fmt: skip  # all 500 there are
    with pytest.raises(DistillError, match="mix-share"):
        RunConfig(mix="gensim", mix_share=1.0)


@pytest.fixture(scope="module")
def collection_run(corpus: list[str], tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """`distill run --tasks collection` of a tiny teacher on a BEIR folder, its documents cut into passages."""
    root = tmp_path_factory.mktemp("collection")
    teacher = save_teacher(tiny_teacher("bert", corpus), root / "teacher")
    beir = write_beir(root / "beir", corpus, documents=60)
    args = ["run", "--teacher", str(teacher), "--corpus", str(beir), "--passages", "cut", "--students", "static",
            "--epochs", "1", "--output", str(root / "run"), "--cache-dir", str(root / "cache"), "--tasks", "collection",
            "--augment", "spans,questions", "--max-length", "48"]  # fmt: skip
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    return root, result.output


def test_a_run_on_a_collection_scores_its_own_retrieval_without_labels(collection_run: tuple[Path, str]) -> None:
    root, output = collection_run
    summary = json.loads((root / "run" / "summary.json").read_text())
    assert summary["corpus"].endswith("beir") and summary["collection_texts"] >= 60  # every document, cut
    names = [t["name"] for t in summary["tasks"]["tasks"]]
    assert names == ["collection-cloze", "beir"]  # the cloze task, and the folder's own queries
    cloze = summary["tasks"]["tasks"][0]
    assert cloze["size"]["documents"] == summary["collection_texts"] and 0 < cloze["size"]["queries"] <= 500
    rows = {(r["task"], r["metric"]): r for r in summary["tasks"]["rows"]}
    assert rows["collection-cloze", "ndcg_at_10"]["main"] and ("collection-cloze", "ndcg_at_10" + INDEX_SUFFIX) in rows
    assert "collection-cloze" in output and "beir" in output  # the final table
    card = (root / "run" / "students" / "static" / "README.md").read_text()
    assert "collection-cloze: ndcg_at_10" in card and "collection-cloze: ndcg_at_10_teacher_index" in card


def test_the_cloze_asks_only_from_held_out_passages(collection_run: tuple[Path, str]) -> None:
    from distill.data.corpus import Split, split_sentences
    from distill.data.targets import Targets

    root, _ = collection_run
    summary = read_summary(root / "run")
    targets = Targets.open(Path(summary["targets"]))
    test_texts = {targets.texts[int(i)] for i in targets.indices(Split.TEST)}
    data = own_cloze(root / "run")
    for query, judged in data.qrels.items():
        (passage,) = judged
        sentence, rest = data.queries[query], data.documents[passage]
        assert sentence not in rest  # the sentence is taken out of a held-out passage
        assert any(sentence in text and all(s in text for s in split_sentences(rest)) for text in test_texts)


def test_a_collection_task_needs_a_run_and_a_run_with_a_collection(tmp_path: Path) -> None:
    with pytest.raises(DistillError, match="scores a run's own corpus"):
        parse_tasks(["collection"])
    (tmp_path / "summary.json").write_text(json.dumps({"targets": str(tmp_path)}))
    with pytest.raises(DistillError, match="records no collection of its own"):
        own_cloze(tmp_path)
    assert corpus_queries(str(tmp_path)) is None and corpus_queries("gensim") is None
    [task] = parse_tasks(["collection"], run=RunCorpus(tmp_path, "gensim"))  # read when scored, not now
    assert task.name == "collection-cloze"


def test_students_for_a_teachers_index_train_for_it_and_report_it_first() -> None:
    own, teacher = RunConfig(), RunConfig(index="teacher")
    assert own.train_config_for("static", {}).index_weight == 0
    assert teacher.train_config_for("static", {}).index_weight == 1.0
    assert (
        build_config({"index": "teacher", "index-weight": 0.3}, {}).train_config_for("static", {}).index_weight == 0.3
    )
    with pytest.raises(DistillError, match="index must be one of own, teacher"):
        RunConfig(index="theirs")
    task = Task("docs", "retrieval", evaluator=None, source="here")
    scores = {"teacher": {"docs": {"ndcg_at_10": 50.0, "ndcg_at_10" + INDEX_SUFFIX: 50.0}},
              "static": {"docs": {"ndcg_at_10": 40.0, "ndcg_at_10" + INDEX_SUFFIX: 45.0}}}  # fmt: skip
    for teacher_index, first, share in ((False, "ndcg_at_10", 0.8), (True, "ndcg_at_10" + INDEX_SUFFIX, 0.9)):
        results = results_section([task], scores, "teacher", teacher_index=teacher_index)
        assert results["rows"][0]["metric"] == first and results["rows"][0]["main"]
        assert results["mean_share"]["static"] == pytest.approx(share)


def test_the_collection_recipe_reads_into_a_valid_run() -> None:
    config = build_config(read_toml(Path(__file__).parent.parent / "configs" / "collection.toml"), {"corpus": "x"})
    with pytest.raises(DistillError, match="no corpus: give one with --corpus"):
        build_config(read_toml(Path(__file__).parent.parent / "configs" / "collection.toml"), {})
    assert config.passages == "cut" and config.mix == "gensim" and "collection" in config.tasks
    assert {"spans", "questions"} <= set(config.augment) and np.isclose(config.mix_share, 0.5)


def test_a_corpus_of_documents_gets_query_shaped_text_unless_told_otherwise() -> None:
    assert RunConfig(passages="cut").augment == ["spans", "questions"]
    assert RunConfig().augment == [] and RunConfig(passages="cut", augment="none").augment == []
    assert RunConfig(passages="cut", augment=["words"]).augment == ["words"]


def test_a_collection_too_short_to_ask_from_is_left_out_with_a_warning(
    collection_run: tuple[Path, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    import eval.collection

    root, _ = collection_run
    monkeypatch.setattr(eval.collection, "cloze_from_passages", lambda *a, **k: (_ for _ in ()).throw(
        DistillError("no passage of three sentences or more to draw a query from")))  # fmt: skip
    evaluator = eval.collection.RunCloze(root / "run")
    assert evaluator(lambda texts: np.zeros((len(texts), 4))) == {} and evaluator.size == {}
    assert "collection task: the held-out passages of" in caplog.text and "it is left out" in caplog.text
