"""The size frontier (`eval.frontier`): which points it keeps, the section `distill eval` builds, its table and plot."""

from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from safetensors.numpy import load_file

from distill.cli.commands import main
from distill.data.targets import Targets
from distill.errors import DistillError
from distill.runfolder import read_summary
from distill.runtime.vectors import Basis
from distill.teacher.model import Teacher
from distill.training.config import RunConfig
from distill.training.pipeline import run_from_model
from eval.encoders import TaskEncoder, VectorCache
from eval.frontier import cached_documents, frontier_section, mark_frontier, parse_forms
from eval.models import Candidate, Model2VecVariant, model2vec_candidate, model2vec_peers
from eval.report import EvalSettings, evaluate_from_model, write_report
from eval.retrieval import RetrievalData, RetrievalEvaluator
from eval.suite import Task, parse_tasks
from eval.vector_forms import VectorForm, with_forms
from tests.test_task_suite import write_tasks


def test_the_frontier_keeps_the_points_no_cheaper_point_beats() -> None:
    points = [{"name": name, "bytes": cost, "share": share} for name, cost, share in [
        ("small", 10, 0.5), ("same", 10, 0.5), ("better", 20, 0.7), ("worse", 20, 0.6), ("dearer", 30, 0.65),
        ("best", 40, 0.9), ("unscored", 5, None), ("unsized", None, 0.99), ("cheapest", 4, 0.1),
    ]]  # fmt: skip
    on = {p["name"] for p in mark_frontier(points, "bytes") if p["frontier"]}
    # "same" ties "small" on both: neither beats the other. A point with no share or size is on no frontier and
    # beats none ("unscored" is the cheapest, "unsized" the best).
    assert on == {"cheapest", "small", "same", "better", "best"}


def test_forms_and_peers_are_read_from_their_flags_and_a_bad_one_is_one_clear_error() -> None:
    assert parse_forms("256, 128/int8,binary,256,none") == [VectorForm(256), VectorForm(128, "int8"),
                                                           VectorForm(None, "binary")]  # fmt: skip
    assert parse_forms("none") == [] and parse_forms("") == []
    for bad in ("int4", "128/64", "0", "int8/binary"):
        with pytest.raises(DistillError, match="bad vector form"):
            parse_forms(bad)
    peers = model2vec_peers("int8,128/int8,vocab4096")
    assert [p.name for p in peers] == ["model2vec-int8", "model2vec-128-int8", "model2vec-vocab4096"]
    assert peers[1].settings() == {"pca_dims": 128, "quantize_to": "int8", "vocabulary_quantization": None}
    assert Model2VecVariant().settings() == {} and model2vec_peers("none") == []  # model2vec's own defaults
    with pytest.raises(DistillError, match="bad model2vec peer"):
        model2vec_peers("int4")
    result = CliRunner().invoke(main, ["eval", "--vector-forms", "64/int3"])
    assert result.exit_code != 0 and "bad vector form '64/int3'" in result.output and "Traceback" not in result.output


def test_each_forms_queries_are_stored_as_its_documents_are() -> None:
    rng = np.random.default_rng(0)
    basis = Basis.fit(rng.normal(size=(100, 32)))
    model = TaskEncoder("m", encode=lambda texts: rng.normal(size=(len(texts), 32)))
    forms = [VectorForm(16), VectorForm(None, "int8"), VectorForm(8, "int8")]
    # every form's queries as wide as its documents (each form its own, not the last form's)
    assert [(e.queries(["a", "b"]).shape[1], e.documents(["a"]).shape[1]) for e in with_forms(model, basis, forms)] == [
        (16, 16), (32, 32), (8, 8)]  # fmt: skip


def test_the_forms_read_a_models_document_vectors_from_the_task_cache(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    table = {word: rng.normal(size=32) for word in ["cats", "dogs", "ships", "rain", "sun", "moon"]}
    embedded: list[int] = []

    def documents(texts: Sequence[str]) -> np.ndarray:
        embedded.append(len(texts))
        return np.stack([table[text] for text in texts])

    model = TaskEncoder("m", encode=lambda texts: np.stack([table[t] for t in texts]), document=documents,
                        identity=lambda: "m")  # fmt: skip
    data = RetrievalData({str(i): word for i, word in enumerate(table)}, {"q": "cats"}, {"q": {"0": 1}})
    task = Task("toy", "retrieval", RetrievalEvaluator(data, VectorCache(tmp_path)), "here")
    assert task.evaluator(model)["ndcg_at_10"] == pytest.approx(100.0) and embedded == [6]  # the model's own column
    basis = Basis.fit(rng.normal(size=(50, 32)))
    forms = with_forms(cached_documents(model, [task]), basis, [VectorForm(16), VectorForm(8, "int8")])
    assert [task.evaluator(form)["ndcg_at_10"] for form in forms] == pytest.approx([100.0, 100.0])
    assert embedded == [6]  # read back from the cache, not embedded again


@pytest.fixture(scope="module")
def tiny_run(tiny_teacher: Teacher, corpus: list[str], tmp_path_factory: pytest.TempPathFactory) -> tuple:
    root = tmp_path_factory.mktemp("run")
    config = RunConfig(output=str(root / "run"), cache_dir=str(root / "cache"), train={"epochs": 1})
    summary = run_from_model(tiny_teacher, corpus, config)
    return Path(summary.run_dir), read_summary(summary.run_dir), Targets.open(Path(summary.targets))


QUICK = EvalSettings(latency_texts=16, singles=3, repeats=1, min_seconds=0, baseline=False, teacher_onnx=False)


def test_the_frontier_puts_every_model_and_stored_form_at_its_bytes(
    tiny_teacher: Teacher, tiny_run: tuple, tmp_path: Path
) -> None:
    run_dir, summary, targets = tiny_run
    tasks = parse_tasks([str(write_tasks(tmp_path / "tasks"))], VectorCache(tmp_path / "vectors"))
    # the tiny teacher is 32 wide: 64 is wider than its basis, so only 16, int8, binary and 8/int8 are scored
    settings = replace(QUICK, vector_forms="16,int8,binary,8/int8,64")
    report, words = evaluate_from_model(tiny_teacher, targets, summary, run_dir, settings, tasks=tasks)
    frontier, shares = report["frontier"], report["tasks"]["mean_share"]
    assert frontier["forms"] == ["16", "int8", "binary", "8/int8", "64"]
    # every model at its shipped bytes (a student's int8 ONNX file) with its share from the tasks, not scored again
    models = {p["model"]: p for p in frontier["models"]}
    assert list(models) == ["teacher", "static"] and models["teacher"]["form"] == "saved"
    assert models["static"]["bytes"] == report["students"]["static"]["bytes"]["onnx_int8"]
    assert all(p["share"] == shares[name] for name, p in models.items())
    vectors = {f"{p['model']}@{p['form']}": p for p in frontier["vectors"]}
    forms = ["full", "16", "int8", "binary", "8/int8"]
    assert list(vectors) == [f"{m}@{f}" for m in ("teacher", "static") for f in forms]
    assert [vectors[f"static@{form}"]["bytes_per_vector"] for form in forms] == [4 * 32, 4 * 16, 32, 4, 8]
    assert vectors["teacher@full"]["share"] == pytest.approx(1.0)
    # the stored forms are scored: 127 steps a value keep nearly all, a bit a dimension less than that
    assert vectors["teacher@int8"]["share"] == pytest.approx(1.0, abs=0.05)
    assert vectors["teacher@binary"]["share"] < vectors["teacher@int8"]["share"]
    cheapest = min(frontier["vectors"], key=lambda p: (p["bytes_per_vector"], -p["share"]))
    best = max(frontier["vectors"], key=lambda p: (p["share"], -p["bytes_per_vector"]))
    assert cheapest["frontier"] and best["frontier"] and not all(p["frontier"] for p in frontier["vectors"])
    written = write_report(tmp_path, report, words)
    assert (tmp_path / "frontier.png") in written and (tmp_path / "frontier.png").read_bytes()[:4] == b"\x89PNG"
    markdown = (tmp_path / "report.md").read_text()
    assert "## Size frontier" in markdown and "](frontier.png)" in markdown
    assert "| model | form | model MB | bytes / vector | mean share | on the frontier |" in markdown
    share = 100 * vectors["static@8/int8"]["share"]
    assert f"| static | 8/int8 vectors | {models['static']['bytes'] / 2**20:.1f} | 8 | {share:.1f}% |" in markdown
    assert f"| static | ONNX int8 model | {models['static']['bytes'] / 2**20:.1f} | 128 |" in markdown


def test_a_quantised_peer_is_distilled_once_and_placed_at_its_own_width(tiny_teacher: Teacher, tmp_path: Path) -> None:
    pytest.importorskip("model2vec.distill")
    variant = Model2VecVariant.parse("16/int8")
    peer = model2vec_candidate(tiny_teacher, tmp_path / variant.name, variant)
    assert peer is not None and peer.name == "model2vec-16-int8" and not peer.same_space
    assert peer.encode(["The cat sat on the mat."]).shape == (1, 16)
    tables = load_file(tmp_path / variant.name / "model.safetensors")
    assert np.dtype(np.int8) in {table.dtype for table in tables.values()}  # an int8 table
    assert "pca_dims=16, quantize_to='int8'" in peer.details["settings"]
    entry = {"role": "baseline", "bytes": {"saved": peer.bytes}}
    report = {"teacher": {"role": "teacher", "bytes": {"saved": 100 * peer.bytes}}, "students": {},
              "baselines": {peer.name: entry}, "tasks": {"mean_share": {"teacher": 1.0, peer.name: 0.6}}}  # fmt: skip
    teacher = Candidate("teacher", "teacher", 0, None, {})
    section = frontier_section(report, [teacher, peer], [], None, [], {"teacher": 32, peer.name: 16})
    assert [(p["model"], p["bytes"], p["frontier"]) for p in section["models"]] == [
        ("teacher", 100 * peer.bytes, True), (peer.name, peer.bytes, True)]  # fmt: skip
    assert [(p["model"], p["form"], p["bytes_per_vector"], p["share"]) for p in section["vectors"]] == [
        ("teacher", "full", 128, 1.0), (peer.name, "full", 64, 0.6)]  # fmt: skip


def test_no_forms_leave_only_each_models_own_vectors(tiny_teacher: Teacher, tiny_run: tuple, tmp_path: Path) -> None:
    run_dir, summary, targets = tiny_run
    tasks = parse_tasks([str(write_tasks(tmp_path / "tasks"))], VectorCache(tmp_path / "vectors"))
    settings = replace(QUICK, vector_forms="none")
    report, _ = evaluate_from_model(tiny_teacher, targets, summary, run_dir, settings, tasks=tasks)
    vectors = report["frontier"]["vectors"]
    assert [(p["model"], p["form"]) for p in vectors] == [("teacher", "full"), ("static", "full")]
    assert [p["share"] for p in vectors] == [report["tasks"]["mean_share"][m] for m in ("teacher", "static")]
    assert np.isfinite(report["frontier"]["seconds"])
    without_tasks, _ = evaluate_from_model(tiny_teacher, targets, summary, run_dir, settings)
    assert "frontier" not in without_tasks
