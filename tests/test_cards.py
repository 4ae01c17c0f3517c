"""Model cards in every student and export folder, and `distill push`: what can be checked without a network."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import huggingface_hub
import pytest
from click.testing import CliRunner
from huggingface_hub import metadata_load
from sentence_transformers import SentenceTransformer

from distill.cards import CARD_FILE, Figure, run_figures, write_run_cards
from distill.cli.commands import main
from distill.data.targets import Targets
from distill.io import write_json
from distill.teacher.model import DEFAULT_TEACHER, Teacher
from students.static import StaticStudent
from students.tokengen import TokenGenStudent
from students.transformer import TransformerStudent
from tests.conftest import SENTENCES

ROOT = Path(__file__).parents[1]


@pytest.fixture(scope="module")
def run_dir(tiny_teacher: Teacher, tiny_targets: Targets, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A run folder as `distill run`, `distill eval` and `distill export` leave it, of the default teacher's name."""
    run = tmp_path_factory.mktemp("run")
    built = {
        "static": StaticStudent.from_teacher(tiny_teacher, tiny_targets),
        "transformer": TransformerStudent.from_teacher(tiny_teacher, tiny_targets, layers=[0]),
        "tokengen": TokenGenStudent.from_teacher(tiny_teacher, tiny_targets, generator_epochs=1, extra_words=5),
    }
    entries = []
    for name, student in built.items():
        path = student.save(run / "students" / name)
        entries.append({"name": name, "path": str(path), "params": student.num_parameters(), "bytes": 1 << 20,
                        "test_fidelity": 0.9123, "other_domain_fidelity": 0.8765})  # fmt: skip
    write_json(run / "summary.json", {"teacher": DEFAULT_TEACHER, "students": entries})
    write_json(run / "report.json", {
        "teacher": {"tasks": {"sts": 0.82}},
        "tasks": {"rows": [
            {"task": "qa-retrieval", "metric": "ndcg@10", "main": True, "scores": {"teacher": 60.0, "static": 45.0},
             "shares": {"teacher": 1.0, "static": 0.75}},
            {"task": "qa-retrieval", "metric": "mrr@10", "main": False, "scores": {"teacher": 50.0, "static": 40.0},
             "shares": {"teacher": 1.0, "static": 0.8}},
        ]},
        "students": {"static": {"tasks": {"sts": 0.7711},
                                "latency": {"onnx_int8": {"batch32_texts_per_s": 20000.0,
                                                          "speedup": {"batch32_texts_per_s": 41.5}}}}},
    })  # fmt: skip
    (run / "export" / "static").mkdir(parents=True)
    write_json(run / "export" / "static" / "config.json", {"name": "static"})
    write_json(run / "export" / "static" / "parity.json", {"fp32": {"max_abs_difference": 3e-7},
                                                           "int8": {"fidelity_loss": 0.0012},
                                                           "bytes": {"fp32": 47 << 20, "int8": 12 << 20}})  # fmt: skip
    write_run_cards(run)
    return run


def card(folder: Path) -> tuple[dict[str, Any], str]:
    return metadata_load(folder / CARD_FILE), (folder / CARD_FILE).read_text()


@pytest.mark.parametrize(("name", "library"), [("static", "sentence-transformers"),
                                               ("transformer", "sentence-transformers"),
                                               ("tokengen", "distill-embeddings")])  # fmt: skip
def test_every_student_folder_has_a_card_with_the_hubs_metadata(run_dir: Path, name: str, library: str) -> None:
    metadata, text = card(run_dir / "students" / name)
    assert metadata["base_model"] == DEFAULT_TEACHER and metadata["library_name"] == library
    assert metadata["license"] == "apache-2.0"  # from the teacher's own card
    assert metadata["pipeline_tag"] == "sentence-similarity" and "distill-embeddings" in metadata["tags"]
    assert (
        f"| fidelity: mean cosine to the teacher, test split | 0.9123 | `distill run (its settings: {run_dir}" in text
    )


def test_the_card_carries_what_eval_and_export_measured_with_their_commands(run_dir: Path) -> None:
    _, text = card(run_dir / "students" / "static")
    assert f"| task: sts | 0.7711 (teacher 0.8200) | `distill eval --run {run_dir}` |" in text
    assert "| speed, onnx_int8, batch 32 | 20,000 texts/s, 41.5x the teacher |" in text
    kept = "| qa-retrieval: ndcg@10 | 45.00, 75.0% of the teacher's |"
    assert f"{kept} `distill eval --run {run_dir} --tasks ...` |" in text
    assert "mrr@10" not in text  # the task's main metric only
    assert f"| ONNX int8: fidelity lost | 0.0012 | `distill export --run {run_dir}` |" in text
    metadata, export_text = card(run_dir / "export" / "static")
    assert metadata["library_name"] == "onnx" and metadata["base_model"] == DEFAULT_TEACHER
    assert "| ONNX int8 size | 12.0 MB |" in export_text and "OnnxEmbedder" in export_text
    assert not (run_dir / "export" / "transformer").exists()  # no export folder, no card made up for it


def test_a_new_figure_is_one_entry(run_dir: Path) -> None:
    """The card is written from a plain mapping, so a figure another file adds is one more entry in it."""
    figures = run_figures(run_dir, "static")
    assert all(isinstance(f, Figure) for f in figures.values()) and "task: sts" in figures


def test_a_folder_with_a_card_still_loads_in_sentence_transformers(run_dir: Path) -> None:
    model = SentenceTransformer(str(run_dir / "students" / "static"), device="cpu")
    assert model.encode(SENTENCES[:2]).shape == (2, 32)


def test_a_teacher_without_a_hub_name_is_named_in_the_text_only(tmp_path: Path, run_dir: Path) -> None:
    summary = json.loads((run_dir / "summary.json").read_text())
    summary["teacher"] = str(tmp_path / "my-teacher")
    summary["students"] = summary["students"][:1]
    write_json(tmp_path / "summary.json", summary)
    (written,) = write_run_cards(tmp_path)
    metadata, text = metadata_load(written), written.read_text()
    assert "base_model" not in metadata and "license" not in metadata and str(tmp_path / "my-teacher") in text


def test_push_refuses_in_one_line_what_cannot_be_pushed(run_dir: Path, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.setattr(huggingface_hub, "get_token", lambda: None)  # no token stored by `hf auth login` either
    student = str(run_dir / "students" / "static")
    for args, message in [([str(tmp_path)], "not a saved student or an export folder"),
                          ([str(run_dir / "export" / "static"), "--repo", "bad name"], "not a Hub repository name"),
                          ([student], "no Hugging Face token")]:  # fmt: skip
        result = CliRunner().invoke(main, ["push", *args, *([] if "--repo" in args else ["--repo", "org/name"])])
        assert result.exit_code == 2 and message in result.output and len(result.output.strip().splitlines()) == 1
    (tmp_path / "student.json").write_text("{}")
    result = CliRunner().invoke(main, ["push", str(tmp_path), "--repo", "org/name"])
    assert result.exit_code == 2 and "no model card" in result.output


@pytest.mark.parametrize("offline", [{"HF_HUB_OFFLINE": "1"}, {"HF_ENDPOINT": "http://127.0.0.1:9"}],
                         ids=["offline-mode", "no-network"])  # fmt: skip
def test_push_without_a_network_ends_with_one_line(run_dir: Path, offline: dict[str, str]) -> None:
    env = {**os.environ, "HF_TOKEN": "hf_not_a_real_token", "PYTHONPATH": str(ROOT), **offline}
    command = [sys.executable, "-m", "distill.cli", "push", str(run_dir / "students" / "static"), "--repo", "org/n"]
    result = subprocess.run(command, env=env, capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert result.returncode == 2, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: could not push"), result.stderr


def test_push_creates_the_repository_and_uploads_the_folder(run_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[str, dict[str, Any]]] = []

    class FakeApi:
        def __init__(self, token: str | None = None) -> None:
            calls.append(("token", {"token": token}))

        def create_repo(self, repo_id: str, **kwargs: Any) -> str:
            calls.append(("create_repo", {"repo_id": repo_id, **kwargs}))
            return f"https://huggingface.co/{repo_id}"

        def upload_folder(self, **kwargs: Any) -> None:
            calls.append(("upload_folder", kwargs))

    monkeypatch.setattr(huggingface_hub, "HfApi", FakeApi)
    monkeypatch.setenv("HF_TOKEN", "hf_test")
    folder = run_dir / "students" / "static"
    result = CliRunner().invoke(main, ["push", str(folder), "--repo", "my-org/static", "--private"])
    assert result.exit_code == 0, result.output
    assert calls[0] == ("token", {"token": "hf_test"})
    assert calls[1] == ("create_repo", {"repo_id": "my-org/static", "private": True, "exist_ok": True})
    assert calls[2][0] == "upload_folder" and calls[2][1]["folder_path"] == str(folder)
    assert calls[2][1]["repo_id"] == "my-org/static" and "https://huggingface.co/my-org/static" in result.output
