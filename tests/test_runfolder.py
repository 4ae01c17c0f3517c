"""A run folder travels (moved, copied, read from another directory) and grows: a second run into it adds its
students, and one that would replace a trained student or mix targets is refused before any work."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

import students
from distill import distill
from distill.cli.commands import main
from distill.errors import DistillError
from distill.export.run import export_run
from distill.runfolder import read_summary
from distill.training.finished import open_run, rebuild_targets
from eval.report import EvalSettings, evaluate_run
from tests.conftest import SENTENCES
from tests.families import save_teacher, tiny_teacher

QUICK = EvalSettings(latency_texts=16, singles=3, repeats=1, min_seconds=0, baseline=False, teacher_onnx=False)
FAST = {"augment": "none", "epochs": 1, "progress": False}


@pytest.fixture(scope="module")
def teacher_folder(corpus: list[str], tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_teacher(tiny_teacher("bert", corpus), tmp_path_factory.mktemp("teacher"))


def _distill(teacher: Path, corpus: list[str], root: Path, students: object = ("static",), **settings: object):
    values = {**FAST, **settings}
    return distill(str(teacher), corpus, students=students, output=root / "run", cache_dir=root / "cache", **values)


def test_a_moved_run_is_evaluated_exported_and_loaded_from_another_directory(
    teacher_folder: Path, corpus: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    Path("corpus.txt").write_text("\n".join(corpus))
    made = _distill(teacher_folder, Path("corpus.txt"), Path("made"))  # NOTE: relative paths, as a user gives them
    vectors = made["static"].encode(SENTENCES)
    recorded = json.loads((tmp_path / "made" / "run" / "summary.json").read_text())
    assert recorded["students"][0]["path"] == "students/static" and recorded["targets"].startswith("../cache/")
    # the run alone to another place, the cache left where it was; then read from a third directory
    shutil.move(tmp_path / "made" / "run", tmp_path / "moved")
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    summary, _ = open_run(tmp_path / "moved")
    assert Path(summary["students"][0]["path"]) == tmp_path / "moved" / "students" / "static"
    np.testing.assert_array_equal(students.load(summary["students"][0]["path"]).encode(SENTENCES), vectors)
    report, _ = evaluate_run(tmp_path / "moved", QUICK)
    assert report["students"]["static"]["fidelity"]["test"]["cosine_mean"] == pytest.approx(
        made.summary.students[0].test_fidelity, abs=1e-4
    )
    assert export_run(tmp_path / "moved", check_texts=16)["static"]["fp32"]["max_abs_difference"] <= 1e-4
    # the run and its cache moved together: found through the recorded relative path
    shutil.move(tmp_path / "moved", tmp_path / "made" / "run")
    shutil.move(tmp_path / "made", tmp_path / "copied")
    assert Path(open_run(tmp_path / "copied" / "run")[0]["targets"]).parent == tmp_path / "copied" / "cache"
    # copied to a machine without the cache: eval says where the targets were, not to train again
    shutil.rmtree(tmp_path / "copied" / "cache")
    with pytest.raises(DistillError, match=r"students are intact.*`distill targets --run .*no training needed"):
        open_run(tmp_path / "copied" / "run")
    # ... and `distill targets --run` builds them again from the settings the run recorded
    args = ["targets", "--run", str(tmp_path / "copied" / "run"), "--cache-dir", str(tmp_path / "new-cache")]
    assert CliRunner().invoke(main, args).exit_code == 0
    summary, targets = open_run(tmp_path / "copied" / "run")
    assert Path(summary["targets"]).parent == tmp_path / "new-cache"
    assert len(targets.texts) == sum(made.summary.texts.values())


def test_a_second_run_adds_its_students_and_never_drops_one_unsaid(
    teacher_folder: Path, corpus: list[str], tmp_path: Path
) -> None:
    first = _distill(teacher_folder, corpus, tmp_path)
    second = _distill(teacher_folder, corpus, tmp_path, students={"wide": {"kind": "static", "init": "vocab"}})
    assert [s.name for s in second.summary.students] == ["static", "wide"]
    assert [s["name"] for s in read_summary(tmp_path / "run")["students"]] == ["static", "wide"]
    np.testing.assert_array_equal(second["static"].encode(SENTENCES), first["static"].encode(SENTENCES))
    # a student it holds: refused in one line naming the ways on, before any work
    with pytest.raises(DistillError, match=r"already holds trained student.*static.*--resume.*--overwrite"):
        _distill(teacher_folder, corpus, tmp_path)
    resumed = _distill(teacher_folder, corpus, tmp_path, resume=True)  # a finished student stays as it is
    np.testing.assert_array_equal(resumed["static"].encode(SENTENCES), first["static"].encode(SENTENCES))
    assert resumed.summary.students[-1].train_seconds == first.summary.students[0].train_seconds
    again = _distill(teacher_folder, corpus, tmp_path, overwrite=True, epochs=2)
    assert {s.name: s.epochs for s in again.summary.students} == {"wide": 1, "static": 2}
    with pytest.raises(DistillError, match="list of texts, which it does not keep"):
        rebuild_targets(tmp_path / "run")


def test_a_run_of_other_targets_is_refused_or_replaced_whole(
    teacher_folder: Path, corpus: list[str], tmp_path: Path
) -> None:
    _distill(teacher_folder, corpus, tmp_path)
    # the Python front door's list of texts has no name: the targets themselves are compared once built
    with pytest.raises(DistillError, match="other targets"):
        _distill(teacher_folder, corpus[::-1], tmp_path, students={"wide": {"kind": "static"}})
    other = corpus[: len(corpus) // 2]
    (tmp_path / "corpus.txt").write_text("\n".join(other))
    with pytest.raises(DistillError, match="another corpus"):
        _distill(teacher_folder, tmp_path / "corpus.txt", tmp_path, students={"wide": {"kind": "static"}})
    replaced = _distill(teacher_folder, other, tmp_path, students={"wide": {"kind": "static"}}, overwrite=True)
    assert [s.name for s in replaced.summary.students] == ["wide"]
    assert not (tmp_path / "run" / "students" / "static").exists()


def test_an_unwritable_output_fails_before_any_work(teacher_folder: Path, corpus: list[str], tmp_path: Path) -> None:
    (tmp_path / "file").write_text("not a folder")
    with pytest.raises(DistillError, match=r"--output .* cannot be written"):
        distill(str(teacher_folder), corpus, output=tmp_path / "file" / "run", cache_dir=tmp_path / "cache")
    with pytest.raises(DistillError, match=r"--cache-dir .* cannot be written"):
        distill(str(teacher_folder), corpus, output=tmp_path / "run", cache_dir=tmp_path / "file" / "cache")
    assert not (tmp_path / "cache").exists()


def test_eval_of_a_folder_that_is_not_a_run_says_so(tmp_path: Path) -> None:
    with pytest.raises(DistillError, match="not a run folder"):
        open_run(tmp_path)
    with pytest.raises(DistillError, match="does not exist"):
        open_run(tmp_path / "missing")
