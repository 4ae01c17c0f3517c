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


def test_run_trains_saves_and_reuses_targets(corpus_file: Path, tmp_path: Path) -> None:
    args = ["run", "--corpus", str(corpus_file), "--output", str(tmp_path / "run"),
            "--cache-dir", str(tmp_path / "cache"), "--epochs", "2"]  # fmt: skip
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
