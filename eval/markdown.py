"""`report.md`: what each student keeps of the teacher's task scores (when tasks ran), then fidelity to the teacher
as one readable table, speed by backend, fidelity on other text forms, and notes."""

from __future__ import annotations

from typing import Any

from distill.cards import INDEX_SUFFIX  # NOTE: not eval.scoring, which loads torch: `make docs` needs none

K = 10
COLUMNS = ["model", "params", "size MB", "int8 ONNX MB", "cosine", "other cos", "cosine p5", f"top-{K} nbrs",
           "pairwise ρ", f"x-recall@{K}", "SimLex", "WS-353", "analogy %", "probe %", "STS", "p50 ms", "b32 x",
           "b128 x", "int8 ONNX b32 x"]  # fmt: skip
SPEED_COLUMNS = ["model", "backend", "file MB", "test cosine", "p50 ms", "b32 texts/s", "b32 x", "b128 x"]
BACKENDS = {"torch": "torch", "numpy": "numpy (its own encoder)", "onnx_fp32": "ONNX fp32", "onnx_int8": "ONNX int8"}
METRICS = {"ndcg_at_10": "nDCG@10", "recall_at_100": "recall@100", "mrr_at_10": "MRR@10", "accuracy": "accuracy",
           "macro_f1": "macro-F1", "v_measure": "V-measure", "spearman": "Spearman"}  # fmt: skip


def render_markdown(report: dict[str, Any]) -> str:
    """The whole report.md."""
    rows = model_rows(report)
    lines = [f"# Evaluation of `{report['run']}`", "",
             f"Measured {report['created']} on {report['machine']['threads']} threads "
             f"({report['machine']['processor']}, torch {report['machine']['torch']}); "
             f"fidelity on the run's {report['data']['test_texts']} held-out test texts.", "",
             *task_section(report), "## Fidelity to the teacher", "", *fidelity_table(report), "",
             "## Speed by backend", "", *speed_table(rows), ""]  # fmt: skip
    others = other_domain_table(report, rows)
    if others:
        lines += ["## Other text forms (never trained on)", "", *others, ""]
    lines += frontier_table(report)
    return "\n".join([*lines, *notes(report, rows)]) + "\n"


def model_rows(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The teacher, the students, then the peers: the rows of every table by model."""
    return {"teacher": report["teacher"], **report["students"], **report["baselines"]}


def fidelity_table(report: dict[str, Any]) -> list[str]:
    """Fidelity, word and sentence tasks, size and speed: one row per model (report.md's "Fidelity to the teacher")."""
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    return lines + ["| " + " | ".join(table_row(name, entry)) + " |" for name, entry in model_rows(report).items()]


def headline_table(report: dict[str, Any]) -> list[str]:
    """One row per model: its score and share of the teacher's on each task's main metric (and a retrieval task's
    against the teacher's index), its mean share, its int8 ONNX MB (a peer's own files) and its texts/s at batch 32
    as a multiple of the torch teacher's, int8 ONNX (a peer's own encoder)."""
    results, rows = report.get("tasks") or {"rows": [], "mean_share": {}}, model_rows(report)
    shown = main_rows(results)
    header = ["model", *(f"{row['task']} {metric_label(row['metric'])}" for row in shown), "mean share", "int8 MB",
              "speed"]  # fmt: skip
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for name, entry in rows.items():
        cells = [_score_share(row, name) for row in shown]
        mean = results["mean_share"].get(name)
        label = name if entry["role"] != "baseline" else f"{name} (peer)"
        lines.append("| " + " | ".join([label, *cells, "-" if mean is None else f"{100 * mean:.0f}%",
                                        *size_speed(entry)]) + " |")  # fmt: skip
    return lines


def main_rows(results: dict[str, Any]) -> list[dict[str, Any]]:
    """Each task's main metric, and a retrieval task's main metric against the teacher's index: a short table's rows."""
    mains = {row["task"]: row["metric"] for row in results["rows"] if row["main"]}
    return [row for row in results["rows"] if row["main"] or row["metric"] == mains.get(row["task"], "") + INDEX_SUFFIX]


def _score_share(row: dict[str, Any], model: str) -> str:
    """A score x 100 with its share of the teacher's in brackets (none for the teacher); - where not scored."""
    score, share = row["scores"].get(model), row["shares"].get(model)
    if score is None:
        return "-"
    return _num(score, 2) + ("" if share is None or model == "teacher" else f" ({100 * share:.0f}%)")


def size_speed(entry: dict[str, Any]) -> list[str]:
    """[int8 ONNX MB, int8 ONNX speed at batch 32]; a peer without ONNX files: its saved MB, its own encoder's speed."""
    backend = "onnx_int8" if "onnx_int8" in entry["latency"] else reference_backend(entry)
    speed = _ratio(entry["latency"][backend]["speedup"]["batch32_speedup"])
    if backend == "onnx_int8":
        return [_mb(entry["bytes"].get("onnx_int8")), speed]
    return [_mb(entry["bytes"].get("saved")), speed if backend == "torch" else f"{speed} ({backend})"]


def task_section(report: dict[str, Any]) -> list[str]:
    """ "What each student keeps": every task's scores with each model's share of the teacher's; none without tasks."""
    results = report.get("tasks")
    if not results:
        return []
    header, rows = task_table(results)
    lines = ["## What each student keeps", "",
             "Each task's score (x 100) for the teacher and every model and backend, and in brackets its share of "
             "the teacher's score.", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]  # fmt: skip
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    lines += ["", *task_notes(results), "", "![share of the teacher's task score against speed](tasks.png)", ""]
    return lines


def task_table(results: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    """(header, rows) of the task results: task, metric, the teacher's score, each model's score (share); the last
    row each model's mean share of the teacher's main scores. Shared by report.md and `distill run --tasks`."""
    teacher, models = results["teacher"], [m for m in results["models"] if m != results["teacher"]]
    small = {task["name"] for task in results["tasks"] if task.get("small")}
    header = ["task", "metric", teacher, *(column_label(m) for m in models)]
    rows = []
    for row in results["rows"]:
        scores, shares = row["scores"], row["shares"]
        cells = [_num(scores[m], 2) + ("" if shares.get(m) is None else f" ({100 * shares[m]:.0f}%)") for m in models]
        task = row["task"] + (" (small)" if row["task"] in small else "")
        rows.append([task, metric_label(row["metric"]), _num(scores[teacher], 2), *cells])
    mean = results["mean_share"]
    rows.append(["mean share", "main metrics", "100%", *("-" if mean[m] is None else f"{100 * mean[m]:.0f}%"
                                                         for m in models)])  # fmt: skip
    return header, rows


def metric_label(metric: str) -> str:
    """ndcg_at_10 -> nDCG@10; ndcg_at_10_teacher_index -> nDCG@10, teacher index; MTEB's names stay as they are."""
    index = metric.endswith(INDEX_SUFFIX)
    base = metric.removesuffix(INDEX_SUFFIX)
    return METRICS.get(base, base) + (", teacher index" if index else "")


def column_label(column: str) -> str:
    """static:onnx_int8 -> static ONNX int8."""
    model, _, backend = column.partition(":")
    return f"{model} {BACKENDS.get(backend, backend)}" if backend else column


def task_lines(results: dict[str, Any]) -> list[str]:
    """One bullet per task: its kind, its size and where it comes from."""
    out = []
    for task in results["tasks"]:
        size = ", ".join(f"{value:,} {key}" for key, value in task["size"].items())
        small = " Small: indicative only." if task.get("small") else ""
        out.append(f"- {task['name']} ({task['kind']}, {size}): {task['source']}.{small}")
    return out


def task_notes(results: dict[str, Any]) -> list[str]:
    """The tasks, then what each metric and the mean share mean."""
    return [*task_lines(results),
            "- Retrieval: nDCG@10, recall@100 and MRR@10 as trec_eval (pytrec_eval, BEIR, MTEB) defines them; "
            "documents are title and text, truncated at each model's max length. 'teacher index': the model's "
            "queries against the document vectors of the teacher (torch), as a student serving queries against an "
            "index the teacher built. Classification: the project's logistic-regression head (C by 5-fold "
            "cross-validation) trained on the train texts' vectors, scored on the test texts. Clustering: k-means "
            "(k = the number of labels) V-measure, mean of 10 seeds. STS: Spearman of cosine against gold.",
            "- mean share: the mean over the tasks of each model's score over the teacher's on the task's main "
            "metric (retrieval nDCG@10, classification accuracy, clustering V-measure, STS Spearman, MTEB's main "
            "score)."]  # fmt: skip


def frontier_table(report: dict[str, Any]) -> list[str]:
    """ "Size frontier": every model at its shipped MB and every stored vector form at its bytes, with its mean share
    and whether it is on its view's frontier; none without report["frontier"] (no tasks)."""
    frontier = report.get("frontier")
    if not frontier:
        return []
    header = ["model", "form", "model MB", "bytes / vector", "mean share", "on the frontier"]
    lines = ["## Size frontier", "",
             "What each model keeps of the teacher's task scores (mean share) against the bytes it ships in (model "
             "rows: its int8 ONNX file where exported, else its saved files) and against the bytes one stored "
             "vector takes (vector rows: its full float32 vectors, then each stored form: fewer dimensions in the "
             "teacher's basis, int8, binary scored as searched with rescoring). A row is on its view's frontier "
             "when no other row of the view takes as few bytes or fewer for a higher share.", "",
             "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]  # fmt: skip
    for point in frontier["models"]:
        lines.append(_frontier_row(point, point["form"] + " model", point["bytes"], _vector_bytes(point), "model MB"))
    for point in frontier["vectors"]:
        lines.append(_frontier_row(point, f"{point['form']} vectors", point.get("model_bytes"),
                                   point["bytes_per_vector"], "bytes / vector"))  # fmt: skip
    note = ("- Model rows: the share of the model's reference backend (torch; a peer's own encoder), as in the "
            "task table. Vector rows: each retrieval task against the form's own index.")  # fmt: skip
    return [*lines, "", note, "", "![share against model and vector bytes](frontier.png)", ""]


def _frontier_row(point: dict[str, Any], form: str, model_bytes: int | None, vector_bytes: int | None,
                  view: str) -> str:  # fmt: skip
    label = point["model"] if point["role"] != "baseline" else f"{point['model']} (peer)"
    share = "-" if point["share"] is None else f"{100 * point['share']:.1f}%"
    cells = [label, form, _mb(model_bytes), "-" if vector_bytes is None else f"{vector_bytes:,}", share,
             f"yes ({view})" if point["frontier"] else ""]  # fmt: skip
    return "| " + " | ".join(cells) + " |"


def _vector_bytes(point: dict[str, Any]) -> int | None:
    """A model's full float32 vector's bytes."""
    return None if point.get("dim") is None else 4 * point["dim"]


def table_row(name: str, entry: dict[str, Any]) -> list[str]:
    test, tasks = entry["fidelity"]["test"], entry["tasks"]
    reference = entry["latency"][reference_backend(entry)]
    int8 = entry["latency"].get("onnx_int8")
    label = name if entry["role"] != "baseline" else f"{name} (peer)"
    return [
        label, f"{entry['params']:,}", _mb(entry["bytes"].get("saved")), _mb(entry["bytes"].get("onnx_int8")),
        _num(test["cosine_mean"]), _num(entry.get("other_domain_fidelity")), _num(test["cosine_p5"]),
        _num(test[f"neighbours_top{K}"]), _num(test["pairwise_spearman"]), _num(test[f"cross_recall_at{K}"]),
        _num(tasks.get("simlex999"), 1), _num(tasks.get("wordsim353"), 1), _num(tasks.get("analogy"), 1),
        _num(tasks.get("polarity_probe"), 1), _num(tasks.get("sts"), 2),
        _num(reference["single_p50_ms"], 2), _num(reference["speedup"]["batch32_speedup"], 2),
        _num(reference["speedup"]["batch128_speedup"], 2),
        _num(int8["speedup"]["batch32_speedup"], 2) if int8 else "-",
    ]  # fmt: skip


def reference_backend(entry: dict[str, Any]) -> str:
    """The backend of a model's own row: torch, or a peer's own encoder."""
    return "torch" if "torch" in entry["latency"] else next(b for b in entry["latency"] if not b.startswith("onnx"))


def speed_table(rows: dict[str, dict[str, Any]]) -> list[str]:
    """One row per model and backend, every speed a ratio to the teacher on torch (whose row is 1.00)."""
    lines = ["| " + " | ".join(SPEED_COLUMNS) + " |", "|" + "---|" * len(SPEED_COLUMNS)]
    for name, entry in rows.items():
        label = name if entry["role"] != "baseline" else f"{name} (peer)"
        for backend in sorted(entry["latency"], key=lambda b: (b.startswith("onnx"), b)):
            figures, speedup = entry["latency"][backend], entry["latency"][backend]["speedup"]
            size = entry["bytes"].get(backend) if backend.startswith("onnx") else entry["bytes"].get("saved")
            cosine = (entry["fidelity"]["test"] if backend == reference_backend(entry)
                      else entry.get("fidelity_by_backend", {}).get(backend, {})).get("cosine_mean")  # fmt: skip
            lines.append("| " + " | ".join([
                label, BACKENDS.get(backend, backend), _mb(size), _num(cosine), _num(figures["single_p50_ms"], 2),
                f"{figures['batch32_texts_per_s']:,.0f}", _num(speedup["batch32_speedup"], 2),
                _num(speedup["batch128_speedup"], 2),
            ]) + " |")  # fmt: skip
    return lines


def other_domain_table(report: dict[str, Any], rows: dict[str, dict[str, Any]]) -> list[str]:
    """Mean cosine to the teacher on each held-out set of other text forms, one column a set; none in older reports."""
    sets = report["data"].get("other_domain")
    if not sets:
        return []
    columns = ["model", *(f"{name} ({count})" for name, count in sets.items()), "mean"]
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for name, entry in rows.items():
        label = name if entry["role"] != "baseline" else f"{name} (peer)"
        cosines = [_num(entry.get("other_domain", {}).get(s)) for s in sets]
        lines.append("| " + " | ".join([label, *cosines, _num(entry.get("other_domain_fidelity"))]) + " |")
    return lines


def notes(report: dict[str, Any], rows: dict[str, dict[str, Any]]) -> list[str]:
    out = ["## Notes", "",
           "- cosine: mean (and 5th percentile) cosine between the model's and the teacher's sentence vectors. "
           f"top-{K} nbrs: share of each text's {K} nearest test texts that model and teacher agree on. pairwise ρ: "
           "Spearman correlation of all pairwise similarities. x-recall@10: queries embedded by the model, documents "
           "by the teacher, recall of the teacher's own top 10 (what a student sees against a teacher-built index).",
           "- other cos: mean cosine to the teacher on held-out text of other forms than the training corpus "
           "(movie reviews, forum titles and sentences, chat; no student trains on them), each set counted once; "
           "the teacher's is 1 by definition. The peer's vectors live in a space of their own, so it has no cosine.",
           "- Tasks (x 100): SimLex-999 and WordSim-353 Spearman (words embedded as one-word texts), Google analogy "
           "accuracy among the set's own words, logistic-regression probe on gensim's 200 polarity sentences "
           "(5 folds), STS Spearman" + (f" on `{report['data']['sts_file']}`." if report["data"]["sts_file"]
                                        else ": no STS file given (`--sts FILE`)."),
           f"- Speed: p50 is one text at a time; b32 x / b128 x are texts/s at batch 32 / 128 over "
           f"{report['data']['latency_texts']} test texts, as a ratio to the teacher's on torch in the same run "
           "(the teacher's torch row is 1.00). In the first table a model's figures are for torch (the peer's "
           "for its own numpy encoder), int8 ONNX b32 x for its int8 file; 'Speed by backend' has all."]  # fmt: skip
    out.append("- king - man + woman = " + ", ".join(f"{name}: {e['tasks']['analogy_example']}"
                                                     for name, e in rows.items()) + ".")  # fmt: skip
    for name, entry in rows.items():
        test = entry["fidelity"]["test"]
        if test.get("token_cosine_mean") is not None:
            out.append(
                f"- {name}: token vectors in context, mean cosine to the teacher's {test['token_cosine_mean']:.4f}."
            )
        if "text" in entry["fidelity"]:
            text = entry["fidelity"]["text"]
            out.append(f"- {name} on `{report['data']['text_file']}` ({text['texts']} texts): cosine "
                       f"{_num(text['cosine_mean'])}, top-{K} nbrs {_num(text[f'neighbours_top{K}'])}.")  # fmt: skip
        out.extend(_export_notes(name, entry))
    teacher_int8 = report["teacher"]["latency"].get("onnx_int8")
    if teacher_int8:
        against = ", ".join(
            f"{name} {e['latency']['onnx_int8']['batch32_texts_per_s'] / teacher_int8['batch32_texts_per_s']:.2f}x"
            for name, e in report["students"].items() if "onnx_int8" in e["latency"]
        )  # fmt: skip
        if against:
            out.append(f"- Against the teacher's own int8 ONNX export at batch 32 (like with like): {against}.")
    for name, entry in report["baselines"].items():
        out.append(f"- {name} (peer baseline): {entry['details'].get('settings', '')}.")
    out += ["", "![fidelity against throughput](pareto.png)", "", "![size](size.png)", "",
            "![words as each model places them](words.png)"]  # fmt: skip
    return out


def _export_notes(name: str, entry: dict[str, Any]) -> list[str]:
    export = entry.get("details", {}).get("export")
    if not export:
        return []
    int8 = export["int8"]
    fusion = export.get("fusion", {})
    ops = ", ".join(f"{n} {op}" for op, n in fusion.get("ops", {}).items())
    fused = f" (fused: {ops})" if fusion.get("fused") else ""
    line = (f"- {name} ONNX{fused}: fp32 max |diff| to torch {export['fp32']['max_abs_difference']:.1e}; int8 mean "
            f"cosine to fp32 {int8['mean_cosine_to_fp32']:.4f}")  # fmt: skip
    if int8["fidelity_loss"] is not None:
        line += f", fidelity {int8['fidelity']:.4f} (loss {int8['fidelity_loss']:.4f})"
    by_backend = entry.get("fidelity_by_backend", {})
    if "onnx_int8" in by_backend:
        line += f"; int8 test cosine {_num(by_backend['onnx_int8']['cosine_mean'])}"
    speeds = entry["latency"]
    if "onnx_fp32" in speeds and "onnx_int8" in speeds:
        ratio = speeds["onnx_int8"]["batch32_texts_per_s"] / speeds["onnx_fp32"]["batch32_texts_per_s"]
        line += f"; int8 is {ratio:.2f}x fp32 at batch 32"
    return [line + "."]


def _num(value: float | None, digits: int = 4) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _ratio(value: float) -> str:
    """A speed ratio to three figures at most: 263x, 43.6x, 4.1x."""
    return f"{value:.0f}x" if value >= 100 else f"{value:.1f}x"


def _mb(size: int | None) -> str:
    return "-" if size is None else f"{size / 2**20:.1f}"
