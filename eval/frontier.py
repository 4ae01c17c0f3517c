"""The size frontier: what each model keeps of the teacher's task scores against what it costs to ship and to store.

Two views, each a list of points with a mean share of the teacher's task scores (`eval.scoring`):

    models    every model (the teacher, each student, model2vec and its quantised peers) at its shipped bytes:
              its int8 ONNX file where it was exported, else its saved model (a peer: its folder); the share is
              its reference backend's, read from report["tasks"] (nothing is scored again)
    vectors   every model in the teacher's space at its full float32 vectors and in each stored form
              (`eval.vector_forms`: fewer dimensions in the teacher's basis, int8, binary scored as rescored) at
              the bytes one stored vector takes; a peer at its own full float32 vectors

    section = frontier_section(report, candidates, tasks, basis, forms, dims)
    section["models"]   # [{"model", "role", "form", "bytes", "dim", "share", "frontier"}]
    section["vectors"]  # [{"model", "role", "form", "bytes_per_vector", "model_bytes", "dim", "share", "frontier"}]

A point is on the frontier when no other point of its view takes fewer or as many bytes for a higher share.

NOTE: the vector view's shares count each retrieval task against the model's own index (a form's vectors
compare with the same form's), also in a run trained for the teacher's index, so its points compare alike;
the model view's are the report's mean shares, as the task table and the headline give them.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from distill.errors import DistillError
from distill.runtime.vectors import PRECISIONS, Basis
from eval.encoders import TaskEncoder, fingerprint
from eval.models import Candidate, task_encoders
from eval.retrieval import RetrievalEvaluator
from eval.scoring import results_section, score_one
from eval.suite import Task
from eval.vector_forms import VectorForm, with_forms

logger = logging.getLogger(__name__)

DEFAULT_FORMS = "256,128,64,int8,binary,128/int8"  # `--vector-forms`: each DIMS, PRECISION or DIMS/PRECISION
FULL = "full"  # a model's own vectors, float32: the form every model has
Point = dict[str, Any]


def parse_forms(spec: str) -> list[VectorForm]:
    """ "256,128/int8,binary" -> its forms, in order, each once; "none" or "" -> none. DistillError on a bad one."""
    forms: list[VectorForm] = []
    for piece in (p.strip() for p in spec.split(",")):
        if piece in ("", "none"):
            continue
        form = _parse_form(piece)
        if form not in forms:
            forms.append(form)
    return forms


def _parse_form(piece: str) -> VectorForm:
    dims, precision = None, "float32"
    for part in piece.split("/"):
        if part.isdigit() and dims is None and int(part) > 0:
            dims = int(part)
        elif part in PRECISIONS and precision == "float32":
            precision = part
        else:
            raise DistillError(f"bad vector form {piece!r}: give DIMS, PRECISION or DIMS/PRECISION (PRECISION one "
                               f"of {', '.join(PRECISIONS)}), e.g. 128/int8, or none")  # fmt: skip
    return VectorForm(dims, precision)


def frontier_section(report: dict[str, Any], candidates: Sequence[Candidate], tasks: Sequence[Task],
                     basis: Basis | None, forms: Sequence[VectorForm], dims: dict[str, int], *,
                     progress: bool = False) -> dict[str, Any]:  # fmt: skip
    """report.json's "frontier": both views' points, each marked on or off its frontier.

    `report`: the report so far, with "tasks" (`score_tasks`); `dims`: each model's vector dimension;
    `basis`: the teacher's (`distill.data.basis.teacher_basis`), needed only with `forms`.
    """
    started = time.perf_counter()
    models = mark_frontier(model_points(report, dims), "bytes")
    form_shares = score_forms(report, candidates, tasks, basis, forms, dims, progress=progress) if forms else {}
    shipped = {point["model"]: point["bytes"] for point in models}
    vectors = mark_frontier(vector_points(report, candidates, forms, dims, form_shares, shipped), "bytes_per_vector")
    return {"forms": [form.label() for form in forms], "models": models, "vectors": vectors,
            "seconds": round(time.perf_counter() - started, 2)}  # fmt: skip


def model_points(report: dict[str, Any], dims: dict[str, int]) -> list[Point]:
    """Each model at its shipped bytes (int8 ONNX where exported, else saved) with its mean share of the tasks."""
    entries = {"teacher": report["teacher"], **report["students"], **report["baselines"]}
    shares = report["tasks"]["mean_share"]
    points = []
    for name, entry in entries.items():
        int8 = entry["bytes"].get("onnx_int8")
        points.append({"model": name, "role": entry["role"], "form": "ONNX int8" if int8 else "saved",
                       "bytes": int8 or entry["bytes"].get("saved"), "dim": dims.get(name),
                       "share": shares.get(name)})  # fmt: skip
    return points


def score_forms(report: dict[str, Any], candidates: Sequence[Candidate], tasks: Sequence[Task], basis: Basis | None,
                forms: Sequence[VectorForm], dims: dict[str, int], *,
                progress: bool = False) -> dict[str, float | None]:  # fmt: skip
    """Each form of each model in the teacher's space ("NAME@LABEL") scored on the tasks, on its reference backend;
    its mean share of the teacher's scores, and the same for each model's own full vectors (NAME)."""
    if basis is None:
        raise ValueError("vector forms need the teacher's basis")
    teacher, in_space = task_encoders(candidates[0])[0], [c for c in candidates if c.same_space]
    scores = reference_scores(report, list(dict.fromkeys([teacher.name, *(c.name for c in in_space)])))
    total = len(tasks) * sum(len(_fitting(forms, dims[c.name], basis)) for c in in_space)
    with tqdm(total=total, desc="vector forms", unit="score", disable=not progress) as bar:
        for candidate in in_space:  # NOTE: one model's forms at a time: their shared raw vectors go with them
            model = cached_documents(task_encoders(candidate)[0], tasks)
            for encoder in with_forms(model, basis, _fitting(forms, dims[candidate.name], basis)):
                scores[encoder.name] = {}
                for task in tasks:
                    scores[encoder.name][task.name] = score_one(task, encoder, teacher)
                    bar.update()
    return results_section(tasks, scores, teacher.name)["mean_share"]


def cached_documents(encoder: TaskEncoder, tasks: Sequence[Task]) -> TaskEncoder:
    """`encoder` with its document vectors of each retrieval task's corpus read from the task's vector cache (where
    scoring the model's own column just put them), so its forms do not embed a corpus again.

    NOTE: the forms' raw vectors are keyed by the texts alone (`with_forms`), the cache by the corpus's ids too,
    so each cached corpus is found by its documents' texts in the task's order.
    """
    corpora = {}
    for task in tasks:
        evaluator = task.evaluator
        if isinstance(evaluator, RetrievalEvaluator) and evaluator.cache is not None and encoder.identity:
            texts = [evaluator.data.documents[d] for d in evaluator.document_ids]
            corpora[fingerprint(texts)] = (evaluator.cache, evaluator.data.fingerprint)

    def documents(texts: Sequence[str]) -> np.ndarray:
        found = corpora.get(fingerprint(texts))
        return encoder.documents(texts) if found is None else found[0].vectors(encoder, texts, found[1])

    return dataclasses.replace(encoder, document=documents) if corpora else encoder


def _fitting(forms: Sequence[VectorForm], dim: int, basis: Basis) -> list[VectorForm]:
    """The forms that store less than a model's full vectors (`dim` wide): one as wide as it or wider is left out."""
    smaller = [form for form in forms if (form.dimensions or dim) < dim or form.precision != "float32"]
    return [form for form in smaller if (form.dimensions or 0) <= basis.dim]


def reference_scores(report: dict[str, Any], columns: Sequence[str]) -> dict[str, dict[str, dict[str, float | None]]]:
    """The task scores report["tasks"] holds for `columns`, as `score_tasks` gathers them: column -> task -> metric."""
    scores: dict[str, dict[str, dict[str, float | None]]] = {column: {} for column in columns}
    for row in report["tasks"]["rows"]:
        for column in columns:
            scores[column].setdefault(row["task"], {})[row["metric"]] = row["scores"].get(column)
    return scores


def vector_points(report: dict[str, Any], candidates: Sequence[Candidate], forms: Sequence[VectorForm],
                  dims: dict[str, int], form_shares: dict[str, float | None],
                  shipped: dict[str, int | None]) -> list[Point]:  # fmt: skip
    """Each model's full float32 vectors, and each scored form of those in the teacher's space, at bytes a vector.

    A full vector's share is its own-index mean share where forms were scored, else the report's mean share.
    """
    shares = report["tasks"]["mean_share"]
    points = []
    for candidate in candidates:
        name, dim = candidate.name, dims[candidate.name]
        base = {"model": name, "role": candidate.role, "model_bytes": shipped.get(name), "dim": dim}
        points.append({**base, "form": FULL, "bytes_per_vector": 4 * dim,
                       "share": form_shares.get(name, shares.get(name))})  # fmt: skip
        for form in forms:
            column = f"{name}@{form.label()}"
            if candidate.same_space and column in form_shares:
                points.append({**base, "form": form.label(), "bytes_per_vector": form.bytes_per_vector(dim),
                               "share": form_shares[column]})  # fmt: skip
    return points


def mark_frontier(points: list[Point], cost: str) -> list[Point]:
    """The points, each with "frontier": no other point costs as little or less (`cost`) for a higher share.

    A point without a share or a cost is never on it and beats no other.
    """
    known = [p for p in points if p.get("share") is not None and p.get(cost) is not None]
    for point in points:
        point["frontier"] = any(p is point for p in known) and not any(
            other[cost] <= point[cost] and other["share"] > point["share"] for other in known
        )
    return points
