"""`--tasks` end to end on a tiny teacher saved to a folder: `distill run --tasks` into summary.json and the final
table, `distill eval --tasks` into the report's first table; the teacher's own query and document prompts."""

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from distill.cli.commands import main
from distill.teacher import Teacher
from eval.models import role_prompts, task_encoders, teacher_candidate
from tests.families import save_teacher, tiny_teacher
from tests.test_task_suite import write_tasks

PROMPTS = {"prompts": {"query": "query: ", "passage": "passage: "}, "default_prompt_name": None}
QUICK = ["--latency-texts", "8", "--singles", "2", "--repeats", "1", "--min-seconds", "0", "--no-baseline"]


@pytest.fixture(scope="module")
def teacher_folder(corpus: list[str], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny BERT teacher whose files name a query and a passage prompt, as e5's do."""
    folder = save_teacher(tiny_teacher("bert", corpus), tmp_path_factory.mktemp("teacher"))
    (folder / "config_sentence_transformers.json").write_text(json.dumps(PROMPTS))
    return folder


@pytest.fixture(scope="module")
def trained(teacher_folder: Path, corpus: list[str], tmp_path_factory: pytest.TempPathFactory) -> tuple:
    root = tmp_path_factory.mktemp("tasks-run")
    (root / "corpus.txt").write_text("\n".join(corpus))
    tasks = write_tasks(root / "tasks")
    args = ["run", "--teacher", str(teacher_folder), "--corpus", str(root / "corpus.txt"), "--students", "static",
            "--epochs", "1", "--output", str(root / "run"), "--cache-dir", str(root / "cache"),
            "--tasks", "default", "--tasks", str(tasks)]  # fmt: skip
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    return root, tasks, result.output


def test_run_tasks_go_into_summary_json_and_the_final_table(trained: tuple) -> None:
    root, _, output = trained
    results = json.loads((root / "run" / "summary.json").read_text())["tasks"]
    assert results["models"] == ["teacher", "static"]  # torch: nothing is exported yet
    assert {t["name"] for t in results["tasks"]} == {"chat-qa", "polarity", "chat-topics", "qa", "topics", "clusters",
                                                      "pairs"}  # fmt: skip
    # NOTE: a share needs a positive teacher score; the tiny teacher may rank the tiny STS pairs backwards
    for row in results["rows"]:
        teacher = row["scores"]["teacher"]
        assert row["shares"]["teacher"] == (pytest.approx(1.0) if teacher is not None and teacher > 0 else None)
    assert sum(row["shares"]["teacher"] is not None for row in results["rows"]) >= len(results["rows"]) - 2
    table = [line for line in output[output.index("tasks: each score") :].splitlines() if line.strip()]
    assert table[1].split() == ["task", "metric", "teacher", "static"]
    assert any(line.startswith("chat-qa (small)") and "nDCG@10, teacher index" in line for line in table)
    assert table[-2].split()[:5] == ["mean", "share", "main", "metrics", "100%"]
    assert table[-1].startswith("distill run took ")
    assert (root / "cache" / "task-vectors").is_dir()  # corpus vectors in the run's cache folder


def test_eval_tasks_lead_the_report_for_every_backend(trained: tuple) -> None:
    root, tasks, _ = trained
    args = [
        "eval",
        "--run",
        str(root / "run"),
        "--tasks",
        f"retrieval:{tasks / 'qa'},sts:{tasks / 'pairs.tsv'}",
        *QUICK,
    ]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    report = json.loads((root / "run" / "report.json").read_text())
    assert report["tasks"]["models"] == ["teacher", "teacher:onnx_fp32", "teacher:onnx_int8", "static",
                                         "static:onnx_fp32", "static:onnx_int8"]  # fmt: skip
    markdown = (root / "run" / "report.md").read_text()
    assert markdown.index("## What each student keeps") < markdown.index("## Fidelity to the teacher")
    assert "| qa | nDCG@10 | " in markdown and (root / "run" / "tasks.png").is_file()
    # it ends with the headline table: per model its mean share, int8 size, speed and test fidelity
    table = result.output[result.output.index("model  ") :].splitlines()
    assert table[0].split() == ["model", "mean", "share", "size", "MB", "speed", "b32", "test", "fidelity"]
    # NOTE: as the report says: a tiny random teacher can score below 0 on a task, and then no model has a share
    shares = {model: "-" if share is None else f"{100 * share:.0f}%" for model, share in
              report["tasks"]["mean_share"].items()}  # fmt: skip
    teacher, static = table[1].split(), table[2].split()
    assert teacher[:2] == ["teacher", shares["teacher"]] and static[:2] == ["static", shares["static"]]
    int8 = report["students"]["static"]["bytes"]["onnx_int8"] / 2**20
    assert static[2] == f"{int8:.1f}" and static[3].endswith("x") and float(static[4]) > 0


def test_a_bad_task_spec_stops_the_eval_in_one_line(trained: tuple) -> None:
    root, _, _ = trained
    result = CliRunner().invoke(main, ["eval", "--run", str(root / "run"), "--tasks", str(root / "missing"), *QUICK])
    assert result.exit_code == 2 and "does not exist" in result.output and "Traceback" not in result.output


def test_the_teacher_searches_with_its_own_query_and_document_prompts(teacher_folder: Path) -> None:
    teacher = Teacher.load(str(teacher_folder))
    assert teacher.prompt == "" and role_prompts(teacher) == {"query": "query: ", "document": "passage: "}
    (encoder,) = task_encoders(teacher_candidate(teacher))
    texts = ["a cat sat on the mat", "rain in spring"]
    np.testing.assert_allclose(encoder.queries(texts), teacher.sentence_vectors([f"query: {t}" for t in texts]),
                               atol=1e-6)  # fmt: skip
    np.testing.assert_allclose(encoder.documents(texts), teacher.sentence_vectors([f"passage: {t}" for t in texts]),
                               atol=1e-6)  # fmt: skip
    assert not np.allclose(encoder.queries(texts), encoder.encode(texts), atol=1e-3)
    assert teacher.prompt == ""  # the run's prompt is back after each call
