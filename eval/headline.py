"""The headline of a report: one row per model with what a user chooses a student by.

Each model as it would be served: its int8 ONNX file where it has one (size and speed), else its saved
model and its own backend; its mean share of the teacher's task scores (torch, as report.md's task table
gives it) and its test fidelity. `distill eval` prints it when it ends; it is rendered from the report
dict alone, so an old report.json gives it too.
"""

from __future__ import annotations

from typing import Any

from eval.markdown import size_speed

HEADER = ["model", "mean share", "size MB", "speed b32", "test fidelity"]


def headline_table(report: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    """(header, rows): teacher, students, then peer baselines; "-" where a figure was not measured."""
    shares = (report.get("tasks") or {}).get("mean_share", {})
    models = {"teacher": report["teacher"], **report["students"], **report["baselines"]}
    rows = []
    for name, entry in models.items():
        label = f"{name} (peer)" if entry["role"] == "baseline" else name
        share = shares.get(name)
        rows.append([label, "-" if share is None else f"{100 * share:.0f}%", *size_speed(entry), _fidelity(entry)])
    return HEADER, rows


def headline_notes(report: dict[str, Any]) -> list[str]:
    """What the columns mean, in two short lines under the table."""
    shares = ("mean share (of the teacher's task scores) and test fidelity: the model on torch" if report.get("tasks")
              else "mean share: no tasks scored (--tasks default scores the suite that ships); test fidelity: the "
              "model on torch")  # fmt: skip
    return [shares,
            "size and speed: the int8 ONNX file where there is one; speed: texts/s at batch 32 over the teacher's "
            "on torch"]  # fmt: skip


def _fidelity(entry: dict[str, Any]) -> str:
    cosine = entry["fidelity"]["test"].get("cosine_mean")
    return "-" if cosine is None else f"{cosine:.4f}"
