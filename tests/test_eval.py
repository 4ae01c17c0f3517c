import json
import os
import zlib
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from distill.cards import CARD_FILE, write_run_cards
from distill.cli.commands import main
from distill.data.targets import Targets
from distill.errors import DistillError
from distill.runfolder import read_summary
from distill.teacher.model import Teacher
from distill.training.config import RunConfig
from distill.training.pipeline import run_from_model
from eval.experiments.bench import headline, sts_gaps, sts_lines
from eval.fidelity import (
    DomainFidelityEvaluator,
    cross_retrieval_recall,
    fidelity_metrics,
    neighbour_agreement,
    unit,
)
from eval.models import export_is_stale
from eval.plots import pareto_frontier
from eval.report import EvalSettings, evaluate_from_model, read_texts, write_report
from eval.tasks import AnalogyEvaluator, PolarityProbe, STSEvaluator, WordSimilarityEvaluator

RNG = np.random.default_rng(0)
TEACHER = unit(RNG.normal(size=(300, 32)))


def test_identical_vectors_agree_on_everything() -> None:
    metrics = fidelity_metrics(TEACHER, TEACHER.copy())
    for key in ("cosine_mean", "cosine_p5", "neighbours_top10", "pairwise_spearman", "cross_recall_at10"):
        assert metrics[key] == pytest.approx(1.0, abs=1e-6), key


def test_a_random_model_agrees_on_almost_nothing() -> None:
    metrics = fidelity_metrics(TEACHER, RNG.normal(size=TEACHER.shape))
    assert abs(metrics["cosine_mean"]) < 0.05 and abs(metrics["pairwise_spearman"]) < 0.05
    assert metrics["neighbours_top10"] < 0.15 and metrics["cross_recall_at10"] < 0.15  # chance is 10/299 and 10/240


def test_a_rotated_space_keeps_its_geometry_but_not_the_teachers_axes() -> None:
    rotation, _ = np.linalg.qr(RNG.normal(size=(32, 32)))
    rotated = TEACHER @ rotation
    assert fidelity_metrics(TEACHER, rotated)["cosine_mean"] < 0.2  # same dimension, other axes
    own = fidelity_metrics(TEACHER, rotated, same_space=False)
    assert own["cosine_mean"] is None and own["cross_recall_at10"] is None
    assert own["neighbours_top10"] == pytest.approx(1.0) and own["pairwise_spearman"] == pytest.approx(1.0)


def test_other_domain_fidelity_is_a_mean_cosine_per_set_and_none_for_a_space_of_its_own() -> None:
    sets = {"a": [f"a{i}" for i in range(100)], "b": [f"b{i}" for i in range(200)], "empty": []}
    vectors = {"a": TEACHER[:100], "b": TEACHER[100:]}
    evaluator = DomainFidelityEvaluator(sets, vectors)
    rows = {t: i for i, t in enumerate(sets["a"] + sets["b"])}
    same = evaluator(lambda texts: TEACHER[[rows[t] for t in texts]])
    assert same["other_domain"] == pytest.approx({"a": 1.0, "b": 1.0}) and same["other_domain_fidelity"] == 1.0
    # each set counts once in the mean, whatever its size: spoil only the small set
    half = evaluator(lambda texts: TEACHER[[rows[t] for t in texts]] * (1 if texts[0][0] == "b" else -1))
    assert half["other_domain"]["a"] == pytest.approx(-1.0) and half["other_domain_fidelity"] == pytest.approx(0.0)
    own = evaluator(lambda texts: TEACHER[[rows[t] for t in texts]], same_space=False)
    assert own == {"other_domain": {"a": None, "b": None}, "other_domain_fidelity": None}
    assert evaluator.of_teacher() == {"other_domain": {"a": 1.0, "b": 1.0}, "other_domain_fidelity": 1.0}


def test_neighbour_agreement_and_recall_degrade_with_noise() -> None:
    slightly = unit(TEACHER + 0.05 * RNG.normal(size=TEACHER.shape))
    badly = unit(TEACHER + 0.5 * RNG.normal(size=TEACHER.shape))
    assert 1.0 > neighbour_agreement(TEACHER, slightly) > neighbour_agreement(TEACHER, badly)
    assert 1.0 > cross_retrieval_recall(TEACHER, slightly) > cross_retrieval_recall(TEACHER, badly)


def test_pareto_frontier_keeps_only_unbeaten_points() -> None:
    points = [(10.0, 0.9), (100.0, 0.8), (50.0, 0.7), (1.0, 1.0), (100.0, 0.5)]
    assert pareto_frontier(points) == [(100.0, 0.8), (10.0, 0.9), (1.0, 1.0)]


# Word tasks on small files whose answers are known: a "model" that is a lookup table.
FEATURES = {"male": 0, "female": 1, "royal": 2, "plain": 3, "young": 4}
WORDS = {"man": ("male", "plain"), "woman": ("female", "plain"), "king": ("male", "royal"),
         "queen": ("female", "royal"), "boy": ("male", "young"), "girl": ("female", "young")}  # fmt: skip


def lookup(texts: list[str]) -> np.ndarray:
    vectors = np.zeros((len(texts), len(FEATURES)))
    for row, text in enumerate(texts):
        for feature in WORDS[text]:
            vectors[row, FEATURES[feature]] = 1.0
    return unit(vectors)


def noise(texts: list[str]) -> np.ndarray:
    """A random vector per text, the same in every process (crc32, not the salted hash())."""
    return unit(np.stack([np.random.default_rng(zlib.crc32(t.encode())).normal(size=5) for t in texts]))


def test_analogy_accuracy_and_the_king_example(tmp_path: Path) -> None:
    (tmp_path / "questions-words.txt").write_text(
        ": family\nman king woman queen\nwoman queen man king\nman boy woman girl\nboy king girl queen\n"
    )
    evaluator = AnalogyEvaluator(tmp_path)
    result = evaluator(lookup)
    assert result == {"analogy": 100.0, "analogy_example": "queen"}
    assert evaluator(noise)["analogy"] < 100.0


def test_word_similarity_is_100_when_cosines_rank_like_gold(tmp_path: Path) -> None:
    pairs = "# header\nking\tqueen\t5\nking\tman\t5\nman\tgirl\t0\nboy\tman\t5\nqueen\tboy\t0\n"
    (tmp_path / "simlex999.txt").write_text(pairs)
    (tmp_path / "wordsim353.tsv").write_text(pairs)
    result = WordSimilarityEvaluator(tmp_path)(lookup)
    # cosines: king-queen 0.5, king-man 0.5, man-girl 0, boy-man 0.5, queen-boy 0: ties rank like gold
    assert result["simlex999"] == pytest.approx(100.0) and result["wordsim353"] == pytest.approx(100.0)


def test_polarity_probe_separates_separable_labels(tmp_path: Path) -> None:
    lines = [f"__label__pos {w}" for w in ["king", "queen"] * 10] + [f"__label__neg {w}" for w in ["boy", "girl"] * 10]
    (tmp_path / "pang_lee_polarity.cor").write_text("\n".join(lines), encoding="cp1252")
    probe = PolarityProbe(tmp_path)
    assert probe(lookup)["polarity_probe"] == pytest.approx(100.0)
    assert probe(lambda texts: np.ones((len(texts), 3)))["polarity_probe"] == pytest.approx(50.0)


@pytest.mark.parametrize(("content", "message"), [(None, "does not exist"), ("\n  \n", "has no text")])
def test_bad_text_file_is_a_clear_error(tmp_path: Path, content: str | None, message: str) -> None:
    path = tmp_path / "texts.txt"
    if content is not None:
        path.write_text(content)
    with pytest.raises(DistillError, match=message):
        read_texts(path)


@pytest.mark.parametrize("flag", ["--text", "--sts"])
def test_eval_cli_rejects_a_missing_file_in_one_line(tmp_path: Path, flag: str) -> None:
    result = CliRunner().invoke(main, ["eval", "--run", str(tmp_path), flag, str(tmp_path / "missing.txt")])
    assert result.exit_code == 2 and "does not exist" in result.output and "Traceback" not in result.output


@pytest.fixture(scope="module")
def tiny_run(tiny_teacher: Teacher, corpus: list[str], tmp_path_factory: pytest.TempPathFactory) -> tuple:
    root = tmp_path_factory.mktemp("run")
    config = RunConfig(output=str(root / "run"), cache_dir=str(root / "cache"), train={"epochs": 1})
    summary = run_from_model(tiny_teacher, corpus, config)
    targets = Targets.open(Path(summary.targets))
    return Path(summary.run_dir), read_summary(summary.run_dir), targets


# Held-out text of other forms than the tiny corpus, as `distill.data.domains.other_domain_texts()` gives it.
OTHER_DOMAIN = {
    "chat": ["how are you today?", "what is your favourite film?", "i am fine thanks", "do you like music?"],
    "titles": ["Space shuttle launch delayed", "Question about orbital mechanics", "Best violin for a beginner"],
}
QUICK = EvalSettings(
    latency_texts=16, singles=3, repeats=1, min_seconds=0, baseline=False, teacher_onnx=False, vector_forms="none"
)  # NOTE: the stored forms are scored in test_frontier.py


def test_report_compares_teacher_and_students_on_every_section(tiny_teacher: Teacher, tiny_run: tuple) -> None:
    run_dir, summary, targets = tiny_run
    settings = EvalSettings(latency_texts=16, singles=3, repeats=1, min_seconds=0, baseline=False, teacher_onnx=True)
    report, words = evaluate_from_model(
        tiny_teacher, targets, summary, run_dir, settings, extra_texts=targets.texts[:30], other_domain=OTHER_DOMAIN
    )
    teacher, static = report["teacher"], report["students"]["static"]
    # the teacher against its own cached targets: the harness itself must see no difference
    assert teacher["fidelity"]["test"]["cosine_mean"] == pytest.approx(1.0, abs=1e-5)
    assert teacher["fidelity"]["test"]["neighbours_top10"] == pytest.approx(1.0)
    assert static["fidelity"]["test"]["cosine_mean"] < 0.999
    for entry in (teacher, static):
        assert {"params", "bytes", "fidelity", "latency", "tasks"} <= set(entry)
        assert {"simlex999", "wordsim353", "analogy", "polarity_probe"} <= set(entry["tasks"])
        assert "text" in entry["fidelity"]
    assert static["latency"]["torch"]["speedup"]["batch32_speedup"] > 0
    assert teacher["latency"]["torch"]["speedup"]["batch32_speedup"] == pytest.approx(1.0)
    # the teacher exported as the students are: its ONNX files give its own vectors
    assert teacher["fidelity_by_backend"]["onnx_fp32"]["cosine_mean"] == pytest.approx(1.0, abs=1e-5)
    assert teacher["fidelity_by_backend"]["onnx_int8"]["cosine_mean"] > 0.9 and "onnx_int8" in teacher["bytes"]
    written = write_report(run_dir, report, words)
    assert {p.name for p in written} == {"report.json", "report.md", "pareto.png", "size.png", "words.png"}
    assert all(p.stat().st_size > 0 for p in written)
    assert (run_dir / "pareto.png").read_bytes()[:4] == b"\x89PNG"
    # never exported before: the eval made the exports, so every student has ONNX rows, each labelled
    assert (run_dir / "export" / "static" / "parity.json").is_file()
    assert {"torch", "onnx_fp32", "onnx_int8"} <= set(static["latency"])
    markdown = (run_dir / "report.md").read_text()
    assert "| static |" in markdown
    assert markdown.count("| teacher | torch | ") == 1
    assert "| teacher | torch | " in markdown and "| 1.00 | 1.00 |" in markdown.split("| teacher | torch | ")[1][:120]
    for backend in ("ONNX fp32", "ONNX int8"):
        assert f"| static | {backend} |" in markdown and f"| teacher | {backend} |" in markdown
    assert "(like with like): ." not in markdown


def test_the_eval_re_exports_a_student_newer_than_its_export(tiny_teacher: Teacher, tiny_run: tuple) -> None:
    run_dir, summary, targets = tiny_run
    export = run_dir / "export" / "static"
    evaluate_from_model(tiny_teacher, targets, summary, run_dir, QUICK)  # exports what is missing
    made = (export / "parity.json").stat().st_mtime_ns
    evaluate_from_model(tiny_teacher, targets, summary, run_dir, QUICK)
    assert (export / "parity.json").stat().st_mtime_ns == made  # up to date: kept
    student = Path(summary["students"][0]["path"])
    write_run_cards(run_dir)  # the cards `distill eval` writes into the student's folder after exporting it
    os.utime(student / CARD_FILE, ns=(made + 10**9, made + 10**9))
    assert not export_is_stale(export, student)  # a newer card is no newer student
    weights = Path(summary["students"][0]["path"]) / "model.safetensors"
    os.utime(weights, ns=(made + 10**9, made + 10**9))  # the student retrained after its export
    evaluate_from_model(tiny_teacher, targets, summary, run_dir, QUICK)
    assert (export / "parity.json").stat().st_mtime_ns > made


def test_report_gives_fidelity_on_other_text_forms(tiny_teacher: Teacher, tiny_run: tuple, tmp_path: Path) -> None:
    run_dir, summary, targets = tiny_run
    report, words = evaluate_from_model(tiny_teacher, targets, summary, run_dir, QUICK, other_domain=OTHER_DOMAIN)
    assert report["data"]["other_domain"] == {"chat": 4, "titles": 3}
    teacher, static = report["teacher"], report["students"]["static"]
    assert teacher["other_domain"] == {"chat": 1.0, "titles": 1.0} and teacher["other_domain_fidelity"] == 1.0
    assert set(static["other_domain"]) == {"chat", "titles"}
    assert all(-1.0 <= c < 0.999 for c in static["other_domain"].values())  # a 1-epoch student is not the teacher
    assert static["other_domain_fidelity"] == pytest.approx(np.mean(list(static["other_domain"].values())))
    write_report(tmp_path, report, words)
    markdown = (tmp_path / "report.md").read_text()
    header = next(line for line in markdown.splitlines() if line.startswith("| model | params"))
    assert "| cosine | other cos |" in header
    assert "| model | chat (4) | titles (3) | mean |" in markdown
    assert f"| static | {static['other_domain']['chat']:.4f} | {static['other_domain']['titles']:.4f} |" in markdown
    assert json.loads((tmp_path / "report.json").read_text())["teacher"]["other_domain_fidelity"] == 1.0


def test_bench_prints_held_out_fidelity_and_the_sts_gap_to_the_teacher(
    tiny_teacher: Teacher, tiny_run: tuple, tmp_path: Path
) -> None:
    run_dir, summary, targets = tiny_run
    sts = tmp_path / "sts.tsv"
    pairs = zip(targets.texts[:40], targets.texts[1:41], strict=True)
    sts.write_text("".join(f"{a}\t{b}\t{i % 5}\n" for i, (a, b) in enumerate(pairs)))
    settings = replace(QUICK, sts_file=str(sts), text_file="other.txt")
    report, _ = evaluate_from_model(tiny_teacher, targets, summary, run_dir, settings, extra_texts=targets.texts[:30],
                                    sts=STSEvaluator(sts), other_domain=OTHER_DOMAIN)  # fmt: skip
    lines = headline(report)
    assert "the first 30 lines of other.txt" in lines[0] and "mean of chat, titles" in lines[0]
    assert lines[1].split()[:5] == ["model", "cosine", "other", "cos", "file"]
    teacher_row = next(line for line in lines if line.startswith("teacher "))
    assert teacher_row.split()[1:4] == ["1.0000", "1.0000", "1.0000"]
    gaps = sts_gaps(report)
    assert gaps is not None and gaps["teacher"] == report["teacher"]["tasks"]["sts"]
    static = gaps["students"]["static"]
    assert static["gap_points"] == pytest.approx(gaps["teacher"] - report["students"]["static"]["tasks"]["sts"])
    assert static["target_points"] == 4.0 and static["met"] == (static["gap_points"] <= 4.0)
    assert any(line.split()[0] == "static" and "target within 4" in line for line in sts_lines(gaps))
    assert sts_gaps({**report, "teacher": {**report["teacher"], "tasks": {}}}) is None


def test_quality_figures_repeat_exactly(tiny_teacher: Teacher, tiny_run: tuple) -> None:
    run_dir, summary, targets = tiny_run
    first, _ = evaluate_from_model(tiny_teacher, targets, summary, run_dir, QUICK)
    second, _ = evaluate_from_model(tiny_teacher, targets, summary, run_dir, QUICK)
    for name in ("teacher", "students"):
        a, b = first[name], second[name]
        a, b = (a, b) if name == "teacher" else (a["static"], b["static"])
        assert a["fidelity"] == b["fidelity"] and a["tasks"] == b["tasks"]


def test_the_peer_baseline_is_distilled_from_the_same_teacher(
    tiny_teacher: Teacher, tiny_run: tuple, tmp_path: Path
) -> None:
    pytest.importorskip("model2vec.distill")
    from eval.models import model2vec_candidate

    candidate = model2vec_candidate(tiny_teacher, tmp_path / "model2vec")
    assert candidate is not None and candidate.role == "baseline" and not candidate.same_space
    vectors = candidate.encode(["The cat sat on the mat.", "A dog barked."])
    assert vectors.shape[0] == 2 and np.isfinite(vectors).all()
    assert (tmp_path / "model2vec" / "model.safetensors").is_file()  # cached for the next eval


def test_latency_keeps_measuring_a_fast_encoder_until_min_seconds() -> None:
    from eval.latency import measure

    calls = []

    def encode(texts: list[str], batch_size: int) -> np.ndarray:
        calls.append(len(texts))
        return np.zeros((len(texts), 2))

    figures = measure(encode, ["a"] * 10, singles=5, repeats=2, min_seconds=0.05)
    assert calls.count(10) > 2 * 2  # more passes than `repeats` at each batch size: each took microseconds
    assert figures["batch32_texts_per_s"] > 0 and figures["single_p50_ms"] <= figures["single_p95_ms"]


def test_tasks_score_every_model_and_backend_and_lead_the_report(
    tiny_teacher: Teacher, tiny_run: tuple, tmp_path: Path
) -> None:
    from eval.encoders import VectorCache
    from eval.suite import parse_tasks
    from tests.test_task_suite import write_tasks

    run_dir, summary, targets = tiny_run
    tasks = parse_tasks([str(write_tasks(tmp_path / "tasks"))], VectorCache(tmp_path / "vectors"))
    report, words = evaluate_from_model(tiny_teacher, targets, summary, run_dir, replace(QUICK, teacher_onnx=True),
                                        tasks=tasks)  # fmt: skip
    results = report["tasks"]
    assert results["models"] == ["teacher", "teacher:onnx_fp32", "teacher:onnx_int8", "static", "static:onnx_fp32",
                                 "static:onnx_int8"]  # fmt: skip
    assert results["backends"]["static:onnx_int8"] == {"model": "static", "backend": "onnx_int8"}
    assert all(row["shares"]["teacher"] == pytest.approx(1.0) for row in results["rows"])
    # the teacher's fp32 export gives its vectors to 1e-5: the same scores, but for a rare tie broken otherwise
    fp32 = [row["shares"]["teacher:onnx_fp32"] for row in results["rows"] if row["main"]]
    assert fp32 == pytest.approx([1.0] * 4, abs=0.02)
    assert {row["metric"] for row in results["rows"] if row["task"] == "qa"} >= {"ndcg_at_10_teacher_index"}
    written = write_report(tmp_path, report, words)
    assert tmp_path / "tasks.png" in written and (tmp_path / "tasks.png").read_bytes()[:4] == b"\x89PNG"
    headings = [line for line in (tmp_path / "report.md").read_text().splitlines() if line.startswith("## ")]
    assert headings[:2] == ["## What each student keeps", "## Fidelity to the teacher"]
    assert json.loads((tmp_path / "report.json").read_text())["tasks"]["mean_share"]["teacher"] == 1.0
    # the second eval reads every backend's document vectors back instead of embedding the corpus again
    cached = {p: p.stat().st_mtime_ns for p in (tmp_path / "vectors").glob("*.npy")}
    assert len(cached) == 6
    again, _ = evaluate_from_model(tiny_teacher, targets, summary, run_dir, replace(QUICK, teacher_onnx=True),
                                   tasks=tasks)  # fmt: skip
    assert {p: p.stat().st_mtime_ns for p in (tmp_path / "vectors").glob("*.npy")} == cached
    assert again["tasks"]["rows"] == results["rows"]


def _entry(role: str, b32: dict[str, float], saved: int, int8: int | None, cosine: float | None) -> dict:
    latency = {backend: {"speedup": {"batch32_speedup": x}} for backend, x in b32.items()}
    size = {"saved": saved, **({"onnx_int8": int8} if int8 else {})}
    return {"role": role, "latency": latency, "bytes": size, "fidelity": {"test": {"cosine_mean": cosine}}}


def test_the_headline_gives_each_model_as_it_is_served() -> None:
    """`distill eval`'s closing table: the int8 file's size and speed where there is one, else the model's own."""
    from eval.headline import headline_notes, headline_table

    report = {
        "teacher": _entry("teacher", {"torch": 1.0, "onnx_int8": 4.14}, 90 << 20, 22 << 20, 1.0),
        "students": {"static": _entry("student", {"torch": 80.0, "onnx_int8": 262.8}, 46 << 20, 11 << 20, 0.8576)},
        "baselines": {"model2vec": _entry("baseline", {"numpy": 136.2}, 15 << 20, None, None)},
        "tasks": {"mean_share": {"teacher": 1.0, "static": 0.8453, "static:onnx_int8": 0.8444, "model2vec": 0.7055}},
    }
    header, rows = headline_table(report)
    assert header == ["model", "mean share", "size MB", "speed b32", "test fidelity"]
    assert rows == [["teacher", "100%", "22.0", "4.1x", "1.0000"], ["static", "85%", "11.0", "263x", "0.8576"],
                    ["model2vec (peer)", "71%", "15.0", "136x (numpy)", "-"]]  # fmt: skip
    del report["tasks"]
    assert headline_table(report)[1][1][1] == "-" and "no tasks scored" in headline_notes(report)[0]


def test_a_students_size_leaves_out_the_onnx_export_in_its_folder(tmp_path: Path) -> None:
    """The transformer student's folder gets sentence-transformers' `onnx/` from `distill export`: not the student."""
    from distill.training.pipeline import folder_bytes

    (tmp_path / "model.safetensors").write_bytes(b"x" * 100)
    (tmp_path / "onnx").mkdir()
    (tmp_path / "onnx" / "model.onnx").write_bytes(b"x" * 1000)
    assert folder_bytes(tmp_path) == 100
