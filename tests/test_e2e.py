"""End to end with the real packaged teacher on a few hundred sentences."""

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

import students
from distill.cli import main
from distill.corpus import default_corpus

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
    args = ["run", "--corpus", str(corpus_file), "--output", str(tmp_path / "run"),
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


def test_eval_and_export_after_a_run(corpus_file: Path, cache_dir: Path, tmp_path: Path) -> None:
    """`make distill && make eval && make export` in small: the report, the plots and parity-checked ONNX files."""
    run = tmp_path / "run"
    args = ["run", "--corpus", str(corpus_file), "--output", str(run), "--cache-dir", str(cache_dir), "--epochs", "2"]
    assert CliRunner().invoke(main, args).exit_code == 0
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
