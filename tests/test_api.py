"""The Python front door, `from distill import distill`, end to end on a tiny teacher saved to a folder."""

import json
from pathlib import Path

import numpy as np
import pytest

import students
from distill import Distilled, distill, distill_from_model
from distill.errors import DistillError
from distill.runfolder import read_summary
from distill.runtime import OnnxEmbedder
from distill.teacher import Teacher
from tests.conftest import SENTENCES
from tests.families import save_teacher, tiny_teacher


@pytest.fixture(scope="module")
def teacher_folder(corpus: list[str], tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_teacher(tiny_teacher("bert", corpus), tmp_path_factory.mktemp("teacher"))


def test_distill_trains_saves_exports_and_gives_back_each_student(
    teacher_folder: Path, corpus: list[str], tmp_path: Path
) -> None:
    corpus_file = tmp_path / "corpus.txt"
    corpus_file.write_text("\n".join(corpus))
    run = distill(str(teacher_folder), corpus_file, students=["static", "transformer"], output=tmp_path / "run",
                  cache_dir=tmp_path / "cache", epochs=1, progress=False)  # fmt: skip
    assert isinstance(run, Distilled) and set(run.students) == {"static", "transformer"}
    assert [s.name for s in run.summary.students] == ["static", "transformer"]
    assert read_summary(run.path)["teacher"] == str(teacher_folder.resolve())
    teacher = Teacher.load(str(teacher_folder))
    for name, student in run.students.items():
        vectors = student.encode(SENTENCES)
        assert vectors.shape == (len(SENTENCES), teacher.dim)
        np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1, atol=1e-5)
        np.testing.assert_array_equal(students.load(run.path / "students" / name).encode(SENTENCES), vectors)
    # the transformer student starts as the teacher's own layers: it must be close to it
    assert run.summary.students[1].test_fidelity > 0.9
    assert (run.path / "students" / "static" / "README.md").is_file()  # the model card `distill run` writes
    exports = run.export()
    assert (exports["static"] / "README.md").is_file()  # and `distill export` one for each export
    onnx = OnnxEmbedder(exports["static"]).encode(SENTENCES)
    np.testing.assert_allclose(onnx, run["static"].encode(SENTENCES), atol=1e-4)
    # and the transformer student's folder holds what sentence-transformers' ONNX backend reads, checked
    parity = json.loads((exports["transformer"] / "parity.json").read_text())["sentence_transformers_onnx"]
    assert parity["fp32"]["max_abs_difference"] <= 1e-4
    assert {"model.onnx", "model_qint8_quantized.onnx"} <= {
        p.name for p in (run.path / "students" / "transformer" / "onnx").iterdir()
    }


def test_distill_takes_a_list_of_texts_and_each_students_own_settings(
    teacher_folder: Path, corpus: list[str], tmp_path: Path
) -> None:
    run = distill(str(teacher_folder), corpus, students={"static": {"epochs": 2, "init": "vocab"}},
                  output=tmp_path / "run", cache_dir=tmp_path / "cache", progress=False)  # fmt: skip
    (static,) = run.summary.students
    assert static.epochs == 2
    assert json.loads((run.path / "students" / "static" / "student.json").read_text())["config"]["init"] == "vocab"


def test_distill_from_model_is_the_core_on_a_teacher_in_memory(
    tiny_teacher: Teacher, corpus: list[str], tmp_path: Path
) -> None:
    run = distill_from_model(tiny_teacher, corpus, output=tmp_path / "run", cache_dir=tmp_path / "cache", epochs=1)
    assert list(run.students) == ["static"] and run["static"].dim == tiny_teacher.dim
    with pytest.raises(KeyError, match="it has: static"):
        run["transformer"]


def test_distill_refuses_bad_settings_in_one_line(tmp_path: Path) -> None:
    with pytest.raises(DistillError, match="not the string 'static'"):
        distill(students="static", output=tmp_path)
    with pytest.raises(DistillError, match="unknown setting"):
        distill(students=["static"], output=tmp_path, epoch=3)
    with pytest.raises(DistillError, match="unknown student"):
        distill(students=["statc"], output=tmp_path)


def test_distill_shows_the_runs_log_as_the_cli_does(
    teacher_folder: Path,
    corpus: list[str],
    tmp_path: Path,
    capfd: pytest.CaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import logging

    monkeypatch.setattr(logging.getLogger(), "handlers", [])  # NOTE: a script that set up no logging (pytest has)
    distill(str(teacher_folder), corpus, students=["static"], output=tmp_path / "run", cache_dir=tmp_path / "cache",
            epochs=1, augment="none")  # fmt: skip
    shown = capfd.readouterr().err
    assert "training on cpu" in shown and "static: test fidelity" in shown and "targets" in shown
    assert not logging.getLogger("distill").handlers  # and the handler goes when the run ends
