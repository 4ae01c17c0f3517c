"""`distill head compare`: the same head on several models, scored side by side against the teacher's."""

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from transformers import BertTokenizerFast

from distill.cli.commands import main
from distill.errors import DistillError
from distill.heads.data import read_labelled
from distill.heads.head import HeadTrainConfig
from eval.head_compare import Labelled, compare_heads, markdown_table, resolve_models
from students.static import StaticConfig, StaticStudent
from tests.test_heads import _sentences


def _static(tokenizer: BertTokenizerFast, folder: Path, seed: int) -> Path:
    config = StaticConfig(dim=32, vocab_size=tokenizer.vocab_size, max_length=32, teacher="tiny", factored=False)
    student = StaticStudent(config, tokenizer.backend_tokenizer)
    student.init_table(np.random.default_rng(seed).standard_normal((tokenizer.vocab_size, 32)))
    return student.save(folder)


@pytest.fixture(scope="module")
def run_dir(tokenizer: BertTokenizerFast, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished run's layout: a summary naming its teacher (a stand-in static model) and two students."""
    run = tmp_path_factory.mktemp("run")
    teacher = _static(tokenizer, run / "teacher", seed=0)
    paths = {name: str(_static(tokenizer, run / "students" / name, seed=i + 1)) for i, name in enumerate(["a", "b"])}
    summary = {"teacher": str(teacher), "students": [{"name": n, "path": p} for n, p in paths.items()]}
    (run / "summary.json").write_text(json.dumps(summary))
    return run


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("data")
    _sentences(30, seed=0).to_csv(folder / "train.csv", index=False)
    _sentences(10, seed=1).to_csv(folder / "test.csv", index=False)
    return {"train": folder / "train.csv", "test": folder / "test.csv"}


def test_names_resolve_against_the_run(run_dir: Path) -> None:
    models = resolve_models(["teacher", "a", str(run_dir / "students" / "b"), "org/hub-model"], run_dir)
    assert models["teacher"] == str(run_dir / "teacher")
    assert models["a"] == str(run_dir / "students" / "a")
    assert models[str(run_dir / "students" / "b")] == str(run_dir / "students" / "b")
    assert models["org/hub-model"] == "org/hub-model"  # left for the hub


def test_bad_names_get_one_line(run_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(DistillError, match=r"has no student 'c' \(it has a, b\)"):
        resolve_models(["teacher", "c"], run_dir)
    with pytest.raises(DistillError, match="not a finished run"):
        resolve_models(["teacher"], tmp_path)
    with pytest.raises(DistillError, match="twice"):
        resolve_models(["a", "a"], run_dir)


def test_every_model_gets_a_row_relative_to_the_teacher(run_dir: Path, data: dict[str, Path], tmp_path: Path) -> None:
    train, test = Labelled(*read_labelled(data["train"])), Labelled(*read_labelled(data["test"]))
    rows = compare_heads(resolve_models(["teacher", "a", "b"], run_dir), train, test, HeadTrainConfig(epochs=50),
                         heads_dir=tmp_path / "heads")  # fmt: skip
    assert [row.name for row in rows] == ["teacher", "a", "b"]
    teacher = rows[0]
    assert (teacher.kept, teacher.speedup) == ({"accuracy": 0.0, "macro_f1": 0.0}, 1.0)
    for row in rows:
        # three topics a bag of words separates: any random table separates them too
        assert row.scores["accuracy"] > 0.8 and row.texts_per_s > 0
        assert row.kept["accuracy"] == pytest.approx(100 * (row.scores["accuracy"] - teacher.scores["accuracy"]))
        assert (tmp_path / "heads" / row.name / "head.json").is_file()
    table = markdown_table(rows)
    assert table.count("\n") == 2 + len(rows) and "| teacher | " in table and "+0.00" in table


def test_without_a_teacher_row_nothing_is_relative(run_dir: Path, data: dict[str, Path]) -> None:
    train, test = Labelled(*read_labelled(data["train"])), Labelled(*read_labelled(data["test"]))
    (row,) = compare_heads({"a": str(run_dir / "students" / "a")}, train, test, HeadTrainConfig(epochs=20))
    assert row.kept is None and row.speedup is None
    assert "| a | " in markdown_table([row]) and "| - |" in markdown_table([row])


def test_cli_prints_and_writes_the_table(run_dir: Path, data: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "compare"
    args = ["head", "compare", "--data", str(data["train"]), "--test", str(data["test"]), "--run", str(run_dir)]
    result = CliRunner().invoke(main, [*args, "--models", "teacher,a", "--output", str(out)])
    assert result.exit_code == 0, result.output
    assert "| teacher |" in result.output and "| a |" in result.output
    written = json.loads((out / "compare.json").read_text())
    assert [row["name"] for row in written["rows"]] == ["teacher", "a"] and written["n_test"] == 30
    assert (out / "compare.md").read_text() in result.output
    assert (out / "heads" / "a" / "head.safetensors").is_file()
    bad = CliRunner().invoke(main, [*args, "--models", "teacher,zzz"])
    assert bad.exit_code == 2 and "has no student 'zzz'" in bad.output and "Traceback" not in bad.output


def test_tuned_rows_sit_beside_the_frozen_ones(run_dir: Path, data: dict[str, Path], tmp_path: Path) -> None:
    """--tune none,last,all: a row per model and setting a model can take (a static student has no last layer)."""
    out = tmp_path / "compare"
    args = ["head", "compare", "--data", str(data["train"]), "--test", str(data["test"]), "--run", str(run_dir),
            "--models", "teacher,a", "--output", str(out), "--tune", "none,last,all", "--per-class", "12",
            "--epochs", "2", "--table-lr", "0.1", "--threads", "1"]  # fmt: skip
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    written = json.loads((out / "compare.json").read_text())
    rows = [(row["name"], row["tune"]) for row in written["rows"]]
    assert rows == [("teacher", "none"), ("teacher", "all"), ("a", "none"), ("a", "all")]
    assert written["n_train"] == 36 and written["tuning"]["epochs"] == 2
    for row in written["rows"]:
        assert row["model_bytes"] > 0 and row["train_seconds"] > 0 and row["scores"]["accuracy"] > 0.5
    assert written["rows"][1]["kept"] is not None and written["rows"][0]["kept"]["accuracy"] == 0.0
    assert "| tune |" in result.output and "| a | all |" in result.output and "| MB |" in result.output
    assert (out / "heads" / "a-all" / "model" / "student.json").is_file()
    bad = CliRunner().invoke(main, [*args[:-10], "--tune", "none,every"])
    assert bad.exit_code == 2 and "unknown --tune 'every'" in bad.output
