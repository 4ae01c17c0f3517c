"""End to end with the real packaged teacher on a few hundred sentences."""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

import students
from distill.cli.commands import main
from distill.data.corpus import default_corpus

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def corpus_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("corpus") / "corpus.txt"
    path.write_text("\n".join(default_corpus()[:400]))
    return path


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One targets cache for the module, so the teacher's vocabulary vectors are computed once."""
    return tmp_path_factory.mktemp("cache")


def test_run_trains_saves_and_reuses_targets(corpus_file: Path, cache_dir: Path, tmp_path: Path) -> None:
    args = ["run", "--corpus", str(corpus_file), "--students", "static", "--output", str(tmp_path / "run"),
            "--cache-dir", str(cache_dir), "--epochs", "2"]  # fmt: skip
    first = CliRunner().invoke(main, args)
    assert first.exit_code == 0, first.output
    assert "static" in first.output and "test fidelity" in first.output
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    (static,) = summary["students"]
    # 400 sentences and 2 epochs: far from the full run, but far above a random table (about 0)
    assert static["test_fidelity"] > 0.4
    student = students.load(tmp_path / "run" / "students" / "static")
    vectors = student.encode(["a quick test", "another one"])
    assert vectors.shape == (2, 384)

    second = CliRunner().invoke(main, [*args, "--resume"])
    assert second.exit_code == 0, second.output
    assert "reusing cached targets" in second.stderr or "reusing cached targets" in second.output
    again = students.load(tmp_path / "run" / "students" / "static")
    np.testing.assert_array_equal(again.encode(["a quick test"]), vectors[:1])


def test_transformer_and_token_generator_train_on_the_real_teacher(
    corpus_file: Path, cache_dir: Path, tmp_path: Path
) -> None:
    (tmp_path / "quick.toml").write_text(
        'students = ["transformer", "tokengen"]\n'
        "[transformer]\nepochs = 1\n"
        "[tokengen]\nepochs = 1\ngenerator-epochs = 2\nextra-words = 200\n"
    )
    args = ["run", "--config", str(tmp_path / "quick.toml"), "--corpus", str(corpus_file),
            "--output", str(tmp_path / "run"), "--cache-dir", str(cache_dir)]  # fmt: skip
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    summary = {s["name"]: s for s in json.loads((tmp_path / "run" / "summary.json").read_text())["students"]}
    transformer, tokengen = summary["transformer"], summary["tokengen"]
    # layers 0 and 5 copied as they are give about 0.43; one epoch on 320 sentences gives about 0.79
    assert transformer["test_fidelity"] > 0.65 and transformer["test_token_fidelity"] > 0.5
    assert "generator_heldout_vocab_cosine" in tokengen["metrics"] and tokengen["test_fidelity"] > 0.3
    assert tokengen["params"] < 0.1 * 30522 * 384  # the whole student, against the teacher's table
    for name in ("transformer", "tokengen"):
        student = students.load(tmp_path / "run" / "students" / name)
        assert student.encode(["a quick test"]).shape == (1, 384)


@pytest.fixture(scope="module")
def static_run(corpus_file: Path, cache_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished run of the static student on the real teacher (400 sentences, 2 epochs)."""
    run = tmp_path_factory.mktemp("static") / "run"
    args = ["run", "--corpus", str(corpus_file), "--students", "static", "--output", str(run), "--cache-dir",
            str(cache_dir), "--epochs", "2"]  # fmt: skip
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    return run


def test_eval_and_export_after_a_run(static_run: Path) -> None:
    """`make distill && make eval && make export` in small: the report, the plots and parity-checked ONNX files."""
    run = static_run
    evaluated = CliRunner().invoke(main, ["eval", "--run", str(run), "--latency-texts", "32", "--singles", "3",
                                          "--repeats", "1", "--min-seconds", "0", "--no-baseline"])  # fmt: skip
    assert evaluated.exit_code == 0, evaluated.output
    report = json.loads((run / "report.json").read_text())
    assert report["teacher"]["fidelity"]["test"]["cosine_mean"] > 0.9999  # the teacher against its own targets
    assert 0.4 < report["students"]["static"]["fidelity"]["test"]["cosine_mean"] < 1.0
    assert report["students"]["static"]["tasks"]["analogy_example"]  # an answer to king - man + woman
    exported = CliRunner().invoke(main, ["export", "--run", str(run), "--check-texts", "64"])
    assert exported.exit_code == 0, exported.output
    folder = run / "export" / "static"
    assert {"model.onnx", "model_int8.onnx", "tokenizer.json", "config.json"} <= {p.name for p in folder.iterdir()}
    parity = json.loads((run / "report.json").read_text())["students"]["static"]["details"]["export"]
    assert parity["fp32"]["max_abs_difference"] <= 1e-4 and parity["int8"]["fidelity_loss"] < 0.01
    assert "static ONNX" in (run / "report.md").read_text()


def test_a_polarity_head_from_compare_to_the_served_onnx_graph(static_run: Path, tmp_path: Path) -> None:
    """gensim's 200 labelled movie-review sentences: heads on the real teacher and a student, compared, then the
    student's exported with its head and served, with the labels torch gives."""
    from fastapi.testclient import TestClient

    from distill.heads.head import ClassifierHead
    from distill.runtime import OnnxClassifier
    from distill.runtime.serve import create_app
    from eval.tasks import PolarityProbe

    probe = PolarityProbe()
    frame = pd.DataFrame({"text": probe.texts, "label": np.where(probe.labels == 1, "positive", "negative")})
    order = np.random.default_rng(0).permutation(len(frame))
    frame.iloc[order[:140]].to_csv(tmp_path / "train.csv", index=False)
    frame.iloc[order[140:]].to_csv(tmp_path / "test.csv", index=False)
    out = tmp_path / "compare"
    compared = CliRunner().invoke(main, ["head", "compare", "--data", str(tmp_path / "train.csv"), "--test",
                                         str(tmp_path / "test.csv"), "--models", "teacher,static", "--run",
                                         str(static_run), "--output", str(out)])  # fmt: skip
    assert compared.exit_code == 0, compared.output
    teacher, static = json.loads((out / "compare.json").read_text())["rows"]
    # 60 test sentences: the teacher's head scores about 0.72 (0.5 is chance), the small run's student's less
    assert teacher["scores"]["accuracy"] > 0.6 and static["scores"]["accuracy"] > 0.5
    assert static["speedup"] > 1 and static["kept"]["accuracy"] == pytest.approx(
        100 * (static["scores"]["accuracy"] - teacher["scores"]["accuracy"]))  # fmt: skip

    exported = CliRunner().invoke(main, ["head", "export", "--head", str(out / "heads" / "static"), "--output",
                                         str(tmp_path / "shipped"), "--data", str(tmp_path / "test.csv")])  # fmt: skip
    assert exported.exit_code == 0, exported.output
    test_texts = list(frame.iloc[order[140:]]["text"])
    head = ClassifierHead.load(out / "heads" / "static")
    expected = head.predict(students.load(static_run / "students" / "static").encode(test_texts))
    classifier = OnnxClassifier(tmp_path / "shipped")
    assert classifier.predict(test_texts) == expected
    np.testing.assert_allclose(classifier.predict_proba(test_texts).sum(axis=1), 1.0, atol=1e-5)
    with TestClient(create_app(classifier, model_name="polarity")) as client:
        response = client.post("/v1/classify", json={"input": test_texts[:8]})
    assert response.status_code == 200
    assert [row["label"] for row in response.json()["data"]] == expected[:8]
