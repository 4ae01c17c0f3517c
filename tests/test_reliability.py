"""The reliability benchmark in its short form (what CI runs of `make loadtest`), on a tiny transformer's int8 export:
the fuzz set, 16 clients and a bad one, a soak, a huge body and signals, against the real `distill serve`."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest

from distill.data.targets import Targets
from distill.export.exporter import export_student
from distill.teacher.model import Teacher
from eval.experiments import reliability
from students.transformer import TransformerStudent
from tests.conftest import SENTENCES


@pytest.fixture(scope="module")
def report(tiny_teacher: Teacher, tiny_targets: Targets, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    student = TransformerStudent.from_teacher(tiny_teacher, tiny_targets, layers=[0, 1])
    out = tmp_path_factory.mktemp("reliability") / "export"
    export_student(student, out, name="tiny-transformer", texts=SENTENCES)
    return reliability.run(out, precision="int8", short=True, threads=1)


def test_the_short_benchmark_holds_every_rule(report: dict[str, Any]) -> None:
    assert [rule for rule, held in report["checks"].items() if not held] == []
    assert len(report["fuzz"]) >= 40 and report["concurrency"]["vectors_checked"] > 100
    assert report["soak"]["good_requests"] > 0 and report["soak"]["bad_requests"] > 0
    assert report["body"]["status"] == 413 and report["body"]["sent_mb_at_answer"] < report["body"]["offered_mb"]


@pytest.mark.parametrize(
    ("stage", "field", "value", "rule"),
    [
        ("concurrency", "max_difference", 1e-3, "concurrency: every vector as the text alone (1e-6)"),
        ("soak", "good_failed", 1, "soak: every good request 200"),
        ("soak", "metrics_200", -1, "soak: /metrics counts what the clients saw"),
        ("body", "growth_mb", 100.0, "body: 413, memory grew < 64 MB"),
        ("sigterm", "answered_200", 0, "sigterm: every request in flight answered 200"),
    ],
)
def test_a_broken_figure_fails_its_rule(
    report: dict[str, Any], stage: str, field: str, value: float, rule: str
) -> None:
    broken = copy.deepcopy(report)
    broken[stage][field] = value
    checks = reliability.checks(broken)
    assert checks[rule] is False and sum(not held for held in checks.values()) == 1


def test_a_broken_fuzz_answer_fails_the_fuzz_rule(report: dict[str, Any]) -> None:
    broken = copy.deepcopy(report)
    broken["fuzz"][0]["problem"] = "status 500, expected 400"
    assert reliability.checks(broken)["fuzz: every case as it should be"] is False


def test_the_text_pool_holds_every_length_and_the_empty_text() -> None:
    pool = reliability.text_pool()
    lengths = [len(text.split()) for text in pool]
    assert "" in pool and min(lengths) == 0 and max(lengths) > 100 and len(set(pool)) > 250


def test_the_command_fails_in_one_line_on_a_folder_that_is_not_an_export(tmp_path: Path) -> None:
    from click.testing import CliRunner

    result = CliRunner().invoke(reliability.main, ["--model", str(tmp_path), "--short"])
    assert result.exit_code == 1 and "not an exported student" in result.output
