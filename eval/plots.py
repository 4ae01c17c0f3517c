"""The report's plots: fidelity against throughput (the Pareto picture), size, a 2-D map of words, and, when tasks
ran, each model's share of the teacher's task scores against its throughput."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # NOTE: files only, never a window (CI and servers have no display)
import matplotlib.pyplot as plt
import numpy as np
from sklearn.decomposition import PCA

from distill.io import atomic_path

MAP_WORDS = [
    "king", "queen", "man", "woman", "boy", "girl", "father", "mother",
    "paris", "london", "berlin", "france", "england", "germany",
    "dog", "cat", "horse", "bird", "fish",
    "red", "green", "blue", "yellow",
    "car", "train", "plane", "ship",
    "happy", "sad", "angry",
    "run", "walk", "swim",
    "apple", "bread", "cheese",
]  # fmt: skip
MARKERS = {"torch": "o", "numpy": "o", "onnx_fp32": "s", "onnx_int8": "^"}


def draw_all(report: dict[str, Any], word_vectors: dict[str, np.ndarray], out: Path) -> list[Path]:
    paths = [out / "pareto.png", out / "size.png", out / "words.png"]
    pareto(report, paths[0])
    sizes(report, paths[1])
    word_map(word_vectors, paths[2])
    if report.get("tasks"):
        paths.append(out / "tasks.png")
        task_shares(report, paths[-1])
    if report.get("frontier"):
        paths.append(out / "frontier.png")
        size_frontier(report, paths[-1])
    return paths


def _models(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {"teacher": report["teacher"], **report["students"], **report["baselines"]}


PARETO_METRICS = {"cosine_mean": "mean cosine to the teacher", "neighbours_top10": "top-10 neighbour agreement"}


def pareto(report: dict[str, Any], path: Path) -> None:
    """Fidelity on the held-out test against texts/s at batch 32, one point per model and backend.

    Two panels: cosine to the teacher (models in its space) and neighbour agreement (every
    model, the peer included); the Pareto frontier of each is joined.
    """
    fig, axes = plt.subplots(1, 2, figsize=(13, 5.5))
    for ax, (metric, label) in zip(axes, PARETO_METRICS.items(), strict=True):
        points = []
        for index, (name, entry) in enumerate(_models(report).items()):
            measured = {**{b: f[metric] for b, f in entry.get("fidelity_by_backend", {}).items()},
                        next(iter(entry["latency"])): entry["fidelity"]["test"][metric]}  # fmt: skip
            for backend, speed in entry["latency"].items():
                fidelity = measured.get(backend)
                if fidelity is None:
                    continue
                x = speed["batch32_texts_per_s"]
                ax.scatter(x, fidelity, marker=MARKERS.get(backend, "o"), s=70, color=f"C{index}",
                           label=f"{name} ({backend})", zorder=3)  # fmt: skip
                points.append((x, fidelity))
        frontier = pareto_frontier(points)
        ax.plot(*zip(*frontier, strict=True), color="grey", linestyle="--", linewidth=1, zorder=2, label="frontier")
        ax.set_xscale("log")
        ax.set_xlabel(f"texts per second at batch 32 ({report['machine']['threads']} threads, log scale)")
        ax.set_ylabel(f"{label} (held-out test)")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7, loc="lower left")
    fig.suptitle("Fidelity against throughput")
    _save(fig, path)


def task_shares(report: dict[str, Any], path: Path) -> None:
    """Each model and backend's mean share of the teacher's task scores against its texts/s at batch 32."""
    results, models = report["tasks"], _models(report)
    fig, ax = plt.subplots(figsize=(8, 5.5))
    points = []
    for column, share in results["mean_share"].items():
        where = results["backends"].get(column, {})
        speed = models.get(where.get("model"), {}).get("latency", {}).get(where.get("backend"), {})
        if share is None or "batch32_texts_per_s" not in speed:
            continue
        index = list(models).index(where["model"])
        x, y = speed["batch32_texts_per_s"], 100 * share
        ax.scatter(x, y, marker=MARKERS.get(where["backend"], "o"), s=70, color=f"C{index}", label=column, zorder=3)
        points.append((x, y))
    if points:
        ax.plot(*zip(*pareto_frontier(points), strict=True), color="grey", linestyle="--", linewidth=1, zorder=2,
                label="frontier")  # fmt: skip
    ax.set_xscale("log")
    ax.set_xlabel(f"texts per second at batch 32 ({report['machine']['threads']} threads, log scale)")
    ax.set_ylabel("mean share of the teacher's task score (%)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7, loc="lower left")
    names = ", ".join(t["name"] + (" (small)" if t.get("small") else "") for t in results["tasks"])
    ax.set_title(f"What each model keeps of the teacher's task scores, against speed\n{names}", fontsize=9)
    _save(fig, path)


FRONTIER_VIEWS = {"models": ("bytes", "model size: MB shipped (int8 ONNX where exported, else saved; log scale)"),
                  "vectors": ("bytes_per_vector", "bytes per stored vector (log scale)")}  # fmt: skip
FORM_MARKERS = {"float32": "o", "int8": "^", "binary": "s"}


def size_frontier(report: dict[str, Any], path: Path) -> None:
    """Mean share of the teacher's task scores against model MB and against bytes per stored vector, one point per
    model (and stored form), each panel's frontier joined."""
    names = list(_models(report))
    fig, axes = plt.subplots(1, 2, figsize=(14, 6))
    for ax, (view, (cost, label)) in zip(axes, FRONTIER_VIEWS.items(), strict=True):
        points = [p for p in report["frontier"][view] if p["share"] is not None and p[cost] is not None]
        scale = 2**20 if cost == "bytes" else 1
        for point in points:
            x, y = point[cost] / scale, 100 * point["share"]
            precision = next((m for m in FORM_MARKERS if m in point["form"]), "float32")
            ax.scatter(x, y, marker=FORM_MARKERS[precision], s=55, color=f"C{names.index(point['model']) % 10}",
                       edgecolors="black" if point["frontier"] else "none", zorder=3)  # fmt: skip
            tag = point["model"] if view == "models" else f"{point['model']}@{point['form']}"
            ax.annotate(tag, (x, y), fontsize=6, xytext=(3, 3), textcoords="offset points")
        best = sorted((p[cost] / scale, 100 * p["share"]) for p in points if p["frontier"])
        if best:
            ax.plot(*zip(*best, strict=True), color="grey", linestyle="--", linewidth=1, zorder=2, label="frontier")
            ax.legend(fontsize=7, loc="lower right")
        ax.set_xscale("log")
        ax.set_xlabel(label)
        ax.set_ylabel("mean share of the teacher's task score (%)")
        ax.grid(True, which="both", alpha=0.3)
    axes[0].set_title("Model size", fontsize=9)
    axes[1].set_title("Stored vector size (o float32, ^ int8, s binary)", fontsize=9)
    fig.suptitle("What each model keeps of the teacher's task scores, against bytes")
    _save(fig, path)


def pareto_frontier(points: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """The points no other point beats on both speed and fidelity, fastest first."""
    frontier: list[tuple[float, float]] = []
    for x, y in sorted(points, key=lambda p: (-p[0], -p[1])):
        if not frontier or y > frontier[-1][1]:
            frontier.append((x, y))
    return frontier


def sizes(report: dict[str, Any], path: Path) -> None:
    """Megabytes on disk: the saved model, and its ONNX fp32 and int8 files where exported."""
    models = _models(report)
    kinds = [("saved", "saved model"), ("onnx_fp32", "ONNX fp32"), ("onnx_int8", "ONNX int8")]
    fig, ax = plt.subplots(figsize=(8, 0.6 * len(models) + 1.5))
    y = np.arange(len(models))
    for offset, (key, label) in enumerate(kinds):
        values = [(entry["bytes"].get(key) or 0) / 2**20 for entry in models.values()]
        bars = ax.barh(y + (offset - 1) * 0.27, values, height=0.27, label=label)
        ax.bar_label(bars, labels=[f"{v:.1f}" if v else "" for v in values], fontsize=7, padding=2)
    ax.set_yticks(y, list(models))
    ax.invert_yaxis()
    ax.set_xlabel("MB on disk")
    ax.set_title("Size")
    ax.legend(fontsize=8)
    _save(fig, path)


def word_map(word_vectors: dict[str, np.ndarray], path: Path) -> None:
    """Common words in 2-D, one panel per model, all on the teacher's two principal axes.

    A model in the teacher's space (same dimension) is projected on the teacher's own axes, so
    the panels compare directly; a model with another dimension gets its own PCA.
    """
    teacher_pca = PCA(n_components=2).fit(word_vectors["teacher"])
    columns = min(3, len(word_vectors))
    rows = int(np.ceil(len(word_vectors) / columns))
    fig, axes = plt.subplots(rows, columns, figsize=(5 * columns, 4.5 * rows), squeeze=False)
    for ax, (name, vectors) in zip(axes.flat, word_vectors.items(), strict=False):
        same_space = vectors.shape[1] == word_vectors["teacher"].shape[1]
        coords = (teacher_pca if same_space else PCA(n_components=2).fit(vectors)).transform(vectors)
        ax.scatter(coords[:, 0], coords[:, 1], s=8, color="C0")
        for word, (x, y) in zip(MAP_WORDS, coords, strict=True):
            ax.annotate(word, (x, y), fontsize=7)
        ax.set_title(name + ("" if same_space else " (own axes)"))
    for ax in axes.flat[len(word_vectors) :]:
        ax.axis("off")
    fig.suptitle("Common words on the teacher's two principal axes")
    _save(fig, path)


def _save(fig: plt.Figure, path: Path) -> None:
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)
