"""Model cards: a `README.md` in every student and export folder, with the Hugging Face Hub's YAML metadata.

The metadata says what the Hub needs to list the model (base_model = the teacher, library_name, pipeline_tag,
tags, and the teacher's licence when its own card has one); the text says how to load the folder and what its run
measured. The figures are a plain mapping, name -> `Figure` (value and the command that measured it), gathered
from the run's files by `run_figures`: `summary.json` (`distill run`), `report.json` (`distill eval`) and each
export's `parity.json` (`distill export`). A new figure in one of them is one more entry there.

    write_run_cards("runs/default")  # every students/<name>/README.md and export/<name>/README.md of the run
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from distill.io import atomic_path, read_json
from distill.runfolder import is_run, read_summary

logger = logging.getLogger(__name__)

INDEX_SUFFIX = "_teacher_index"  # a retrieval metric against the teacher's index (`eval.scoring` writes it)

CARD_FILE = "README.md"
RUN, EVAL, EXPORT = "distill run", "distill eval", "distill export"


@dataclass(frozen=True)
class Figure:
    value: str  # as the card shows it
    command: str  # the command that measured it


@dataclass
class Card:
    """What a card says: the folder's model, where it came from, how to load it, what was measured."""

    title: str
    teacher: str
    about: str  # one paragraph: what this folder is
    usage: str  # a fenced code block or two
    library: str = "sentence-transformers"
    pipeline_tag: str = "sentence-similarity"
    tags: list[str] = field(default_factory=list)
    figures: Mapping[str, Figure] = field(default_factory=dict)
    license: str | None = None

    def metadata(self) -> dict[str, Any]:
        data: dict[str, Any] = {"library_name": self.library, "pipeline_tag": self.pipeline_tag,
                                "tags": ["distill-embeddings", *self.tags]}  # fmt: skip
        if is_hub_name(self.teacher):  # NOTE: the Hub takes a repository name only; a local folder is named in the text
            data = {"base_model": self.teacher, **data}
        if self.license:
            data["license"] = self.license
        return data

    def text(self) -> str:
        lines = ["---", yaml.safe_dump(self.metadata(), sort_keys=False).strip(), "---", "", f"# {self.title}", "",
                 self.about, "", "## Use", "", self.usage.strip(), ""]  # fmt: skip
        if self.figures:
            lines += ["## What its run measured", "", "| figure | value | measured by |", "| --- | --- | --- |"]
            lines += [f"| {name} | {f.value} | `{f.command}` |" for name, f in self.figures.items()]
            lines.append("")
        return "\n".join(lines)

    def write(self, folder: str | Path) -> Path:
        path = Path(folder) / CARD_FILE
        with atomic_path(path) as tmp:
            tmp.write_text(self.text(), encoding="utf-8")
        return path


def is_hub_name(name: str) -> bool:
    """Whether `name` reads as a Hub repository ("org/name"), not a local folder."""
    return bool(re.fullmatch(r"[\w-][\w.-]*/[\w.-]+", name)) and not Path(name).exists()


def teacher_link(teacher: str) -> str:
    return f"[{teacher}](https://huggingface.co/{teacher})" if is_hub_name(teacher) else f"`{teacher}`"


def teacher_license(teacher: str) -> str | None:
    """The `license` of the teacher's own card: its folder's README.md (a local or packaged teacher) or, for a Hub
    name, the card in the local Hub cache. None when there is none (nothing is downloaded)."""
    from huggingface_hub import metadata_load, try_to_load_from_cache

    from distill.errors import DistillError
    from distill.teacher.model import resolve_teacher

    try:
        resolved = resolve_teacher(teacher)
    except DistillError:
        return None
    try:  # NOTE: a name the Hub would refuse (an in-memory teacher's) raises a ValueError here
        readme = resolved / CARD_FILE if isinstance(resolved, Path) else try_to_load_from_cache(resolved, CARD_FILE)
        if not isinstance(readme, str | Path) or not Path(readme).is_file():
            return None
        license_ = (metadata_load(Path(readme)) or {}).get("license")
    except (ValueError, OSError, yaml.YAMLError):
        return None
    return str(license_) if license_ else None


def run_figures(run_dir: Path, name: str) -> dict[str, Figure]:
    """The figures the run measured of its student `name`, from whichever of its files exist."""
    figures: dict[str, Figure] = {}
    summary = _read(run_dir / "summary.json") or {}
    entry = next((s for s in summary.get("students", []) if s["name"] == name), None)
    if entry:
        run = f"{RUN} (its settings: {run_dir}/summary.json)"
        figures["fidelity: mean cosine to the teacher, test split"] = Figure(f"{entry['test_fidelity']:.4f}", run)
        if entry.get("other_domain_fidelity") == entry.get("other_domain_fidelity"):  # not NaN
            figures["fidelity on text of other forms"] = Figure(f"{entry['other_domain_fidelity']:.4f}", run)
        figures["parameters"] = Figure(f"{entry['params']:,}", run)
        figures["saved size"] = Figure(_mb(entry["bytes"]), run)
    full_report = _read(run_dir / "report.json") or {}
    report = full_report.get("students", {}).get(name)
    teacher = full_report.get("teacher", {})
    # NOTE: the task suite's rows, from `distill eval --tasks` or else from `distill run --tasks`
    tasks, command = full_report.get("tasks"), f"{EVAL} --run {run_dir} --tasks ..."
    if not tasks:
        tasks, command = summary.get("tasks"), f"{RUN} --tasks ..."
    mains = {row["task"]: row["metric"].removesuffix(INDEX_SUFFIX) for row in (tasks or {}).get("rows", [])
             if row.get("main")}  # fmt: skip
    for row in (tasks or {}).get("rows", []):
        score, share = row["scores"].get(name), row["shares"].get(name)
        # NOTE: a retrieval task's main metric both against the student's own index and against the teacher's
        if row["metric"].removesuffix(INDEX_SUFFIX) == mains.get(row["task"]) and isinstance(score, int | float):
            kept = f", {share:.1%} of the teacher's" if isinstance(share, int | float) else ""
            figures[f"{row['task']}: {row['metric']}"] = Figure(f"{score:.2f}{kept}", command)
    if report:
        evaluate = f"{EVAL} --run {run_dir}"
        for task, score in sorted(report.get("tasks", {}).items()):
            if isinstance(score, int | float):
                of_teacher = teacher.get("tasks", {}).get(task)
                kept = f" (teacher {of_teacher:.4f})" if isinstance(of_teacher, int | float) else ""
                figures[f"task: {task}"] = Figure(f"{score:.4f}{kept}", evaluate)
        for backend, latency in report.get("latency", {}).items():
            speed = latency.get("batch32_texts_per_s")
            if isinstance(speed, int | float):
                ratio = latency.get("speedup", {}).get("batch32_texts_per_s")
                times = f", {ratio:.1f}x the teacher" if isinstance(ratio, int | float) else ""
                figures[f"speed, {backend}, batch 32"] = Figure(f"{speed:,.0f} texts/s{times}", evaluate)
    parity = _read(run_dir / "export" / name / "parity.json")
    if parity:
        export = f"{EXPORT} --run {run_dir}"
        figures["ONNX fp32: max abs difference to torch"] = Figure(
            f"{parity['fp32']['max_abs_difference']:.1e}", export
        )
        loss = parity.get("int8", {}).get("fidelity_loss")
        if isinstance(loss, int | float):
            figures["ONNX int8: fidelity lost"] = Figure(f"{loss:.4f}", export)
        for precision, size in parity.get("bytes", {}).items():
            figures[f"ONNX {precision} size"] = Figure(_mb(size), export)
    return figures


def _read(path: Path) -> Any:
    return read_json(path) if path.is_file() else None


def _mb(size: int) -> str:
    return f"{size / 2**20:.1f} MB"


_LOADERS = {
    "static": """```python
from sentence_transformers import SentenceTransformer
model = SentenceTransformer("{path}")          # or the Hub name after `distill push`

from model2vec import StaticModel
model = StaticModel.from_pretrained("{path}")  # the same vectors (a text with no token apart)
```""",
    "transformer": """```python
from sentence_transformers import SentenceTransformer
model = SentenceTransformer("{path}")
# ONNX (after `distill export`; needs `sentence-transformers[onnx]`):
model = SentenceTransformer("{path}", backend="onnx", model_kwargs={{"file_name": "onnx/model_qint8_quantized.onnx"}})
```""",
    "tokengen": """```bash
distill write-table --student {path} --output {path}-table   # its table: a static student that
                                                             # sentence-transformers and model2vec load
```
```python
import students
model = students.load("{path}")  # with distill-embeddings installed
```""",
}
_ABOUT = {
    "static": "A static student: one vector per vocabulary token, averaged and normalised; a table lookup, no "
    "attention, so it embeds on any CPU at a fraction of the teacher's cost.",
    "transformer": "A transformer student: a few of the teacher's own layers, trained to give its sentence vectors.",
    "tokengen": "A token-generator student: a small network writes each token's vector from its spelling, so the "
    "saved model is a fraction of a static table's size.",
    "static-compressed": "A static student whose table is stored compressed (`distill compress`: int8, int4 or "
    "product-quantised rows), decoded row by row as texts are embedded. sentence-transformers and model2vec cannot "
    "load it; distill-embeddings and its ONNX export can.",
}
OWN_LIBRARY = ("tokengen", "static-compressed")  # kinds only distill-embeddings loads


def student_card(kind: str, name: str, folder: Path, teacher: str, figures: Mapping[str, Figure],
                 license_: str | None) -> Card:  # fmt: skip
    """The card of a saved student of `kind` in `folder`."""
    about = f"{_ABOUT.get(kind, f'A {kind} student.')} Distilled from {teacher_link(teacher)} by distill-embeddings "
    about += f"(`distill run`), student {name!r}."
    tags = {"static": ["static-embeddings", "model2vec"], "transformer": ["transformers", "onnx"]}.get(kind, [])
    library = "distill-embeddings" if kind in OWN_LIBRARY else "sentence-transformers"
    usage = _LOADERS.get(kind, '```python\nimport students\nmodel = students.load("{path}")\n```')
    return Card(
        f"{name}: a {kind} student of {teacher}",
        teacher,
        about,
        usage.format(path=folder),
        library=library,
        tags=[*(["sentence-transformers"] if library == "sentence-transformers" else []), "feature-extraction", *tags],
        figures=figures,
        license=license_,
    )


def export_card(name: str, folder: Path, teacher: str, figures: Mapping[str, Figure], license_: str | None,
                *, head: str | None = None) -> Card:  # fmt: skip
    """The card of an export folder (`distill export`, or `distill head export` with a `head` of its task)."""
    loader, pipeline = {None: ("OnnxEmbedder", "sentence-similarity"), "classify": ("OnnxClassifier",
                        "text-classification"), "tokens": ("OnnxTagger", "token-classification")}[head]  # fmt: skip
    route = {None: "/v1/embeddings", "classify": "/v1/classify", "tokens": "/v1/tag"}[head]
    usage = (
        f"```python\nfrom distill.runtime import {loader}   # pip install distill-embeddings (no torch)\n"
        f'model = {loader}("{folder}", precision="int8")\n```\n```bash\n'
        f"distill serve --model {folder}   # POST {route}, OpenAI-compatible /v1/embeddings\n```"
    )
    about = (
        f"ONNX export (fp32 `model.onnx`, int8 `model_int8.onnx`) of {name!r}, distilled from "
        f"{teacher_link(teacher)}, checked against the torch model before it was written."
    )
    return Card(f"{name}: ONNX export", teacher, about, usage, library="onnx", pipeline_tag=pipeline,
                tags=["onnx", "int8", *(["text-embeddings-inference"] if head is None else [])], figures=figures,
                license=license_)  # fmt: skip


def write_run_cards(run_dir: str | Path) -> list[Path]:
    """A card in each student folder of the run and in each of its export folders; the paths written."""
    run_dir = Path(run_dir)
    if not is_run(run_dir):
        return []
    summary = read_summary(run_dir)
    license_ = teacher_license(summary["teacher"])
    written = []
    for entry in summary["students"]:
        figures = run_figures(run_dir, entry["name"])
        kind = str((_read(Path(entry["path"]) / "student.json") or {}).get("kind", entry["name"]))
        if Path(entry["path"]).is_dir():
            card = student_card(kind, entry["name"], Path(entry["path"]), summary["teacher"], figures, license_)
            written.append(card.write(entry["path"]))
        export = run_dir / "export" / entry["name"]
        if (export / "config.json").is_file():
            written.append(export_card(entry["name"], export, summary["teacher"], figures, license_).write(export))
    logger.info("model cards: %s", ", ".join(str(p) for p in written))
    return written
