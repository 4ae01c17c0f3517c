"""`distill head export`: a classification head and its model in one ONNX graph per precision (a tokens head:
`distill.heads.tagger_export`).

The model is exported as `distill export` exports a student (a saved student; a teacher, copied
into a transformer student with all its layers, as `distill eval` times it), or copied as it is (an
export folder). The head's layers are then appended to each graph after its `sentence_vectors`,
which stay an output beside the new `probabilities`, so one graph serves both, whatever the
student's kind and its inputs (padded or flat), with no re-tracing:

    model.onnx        inputs as `distill export` writes them -> sentence_vectors (batch, dim)
                                                              and probabilities (batch, classes)
    model_int8.onnx   the int8 model with the same head, in fp32 (it is a few kB)
    head.json         the head's config: its labels, in the order of the probabilities' columns
    config.json       the export's config, with "head" and "outputs" added
    tokenizer.json    as `distill export` writes it
    parity.json       the model's figures and, under "head", the head's
    embeddings/       for a head tuned with its model (`--tune`): the untuned model, for embeddings
                      (`distill.heads.untuned`; its figures under parity.json's "embeddings")

The fp32 probabilities must match the torch head on the model's own vectors (the torch student's,
the teacher's, or those of the export copied) to `HEAD_TOLERANCE` on the check texts, or nothing
is written; the int8 graph's agreement with them is measured, not required.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import torch
from onnx import TensorProto, helper, numpy_helper
from torch import nn

from distill.errors import DistillError
from distill.export.exporter import EDGE_TEXTS, PARITY_FILE, export_student
from distill.heads.data import Encode, read_table
from distill.heads.head import FORMAT_VERSION, ClassifierHead
from distill.heads.models import load_model, model_of, teacher_student
from distill.heads.tagger_export import export_tagger
from distill.heads.untuned import add_untuned, copy_export
from distill.io import atomic_dir, read_json, write_json
from distill.runtime import CONFIG_FILE, MODEL_FILES, OUTPUT_NAME, ExportConfig, OnnxEmbedder
from distill.runtime.classifier import HEAD_FILE, PROBABILITIES, OnnxClassifier
from distill.teacher.model import Teacher
from students.base import Student
from students.transformer import TransformerStudent

logger = logging.getLogger(__name__)

HEAD_TOLERANCE = 1e-4  # max absolute difference of the fp32 graph's probabilities to torch's
INT8_WARN_AGREEMENT = 0.99  # below this share of the same top label, int8 gets a warning
PREFIX = "head."  # the appended nodes' and weights' names: "head.layers.0.weight", as the head's state dict


def export_head(
    head_dir: str | Path, model: str | None, output_dir: str | Path, *, texts: Sequence[str]
) -> dict[str, Any]:
    """Export the head in `head_dir` with `model` (default: the model it was trained on) to `output_dir`.

    `model` is a saved student folder, an export folder or a teacher's folder or name, as
    `distill head train` takes it. Returns the parity figures (what `parity.json` holds).
    """
    head = ClassifierHead.load(head_dir)
    model = model_of(head_dir, head, model)
    if head.config.task == "tokens":
        return export_tagger(head, tagger_model(load_model(model), model), output_dir, texts=texts)
    return export_classifier(head, load_model(model), output_dir, texts=texts)


def tagger_model(model: Student | Teacher | Path, name: str) -> TransformerStudent:
    """The transformer a tagger is exported with: a transformer student, or the teacher copied into one."""
    if isinstance(model, Teacher):
        return teacher_student(model)
    if isinstance(model, TransformerStudent):
        return model
    what = "an ONNX export, which gives sentence vectors only" if isinstance(model, Path) else f"a {model.kind} student"
    raise DistillError(f"a tagger reads token vectors in context; {name!r} is {what}: export the tagger with the "
                       "transformer student or the teacher it was trained on")  # fmt: skip


def export_classifier(
    head: ClassifierHead, model: Student | Teacher | Path, directory: str | Path, *, texts: Sequence[str]
) -> dict[str, Any]:
    """Write `model` with `head` appended to `directory` (its name is the model's name in `config.json`).

    `texts` are the texts of the parity check. Raises DistillError, and writes nothing, when the fp32
    probabilities differ from the torch head's by more than `HEAD_TOLERANCE`.
    """
    if head.config.task != "classify":
        raise DistillError(f"only a classify head is joined to a model's sentence vectors; this one is a "
                           f"{head.config.task!r} head (export_head exports a tokens head as a tagger)")  # fmt: skip
    if not texts:
        raise DistillError("the head's parity check needs texts; got none")
    check_dim(head, model)
    directory = Path(directory)
    encode, about = _reference(model)
    texts = list(texts)
    checked = [*texts, *EDGE_TEXTS]  # the parity check's texts: `texts` and the export's edge cases
    vectors = np.ascontiguousarray(encode(checked), dtype=np.float32)  # (checked, dim)
    with torch.inference_mode():
        expected = torch.softmax(head.eval()(torch.from_numpy(vectors)), dim=1).numpy()  # (checked, classes)
    with atomic_dir(directory) as tmp:
        if isinstance(model, Path):
            parity = copy_export(model, tmp)
        else:
            student = teacher_student(model) if isinstance(model, Teacher) else model
            teacher_vectors = vectors[: len(texts)] if isinstance(model, Teacher) else None
            parity = export_student(student, tmp, name=directory.name, texts=texts, teacher_vectors=teacher_vectors)
        for file in MODEL_FILES.values():
            append_head(tmp / file, head)
        write_head_files(tmp, head, directory.name)
        figures = check_head(tmp, checked, expected)
        parity["head"] = {"labels": head.labels, "kind": head.config.kind, "reference": about, **figures}
        parity["bytes"] = {precision: (tmp / file).stat().st_size for precision, file in MODEL_FILES.items()}
        parity.update(add_untuned(head, tmp, texts=texts))
        write_json(tmp / PARITY_FILE, parity)
    if parity["head"]["int8"]["agreement"] < INT8_WARN_AGREEMENT:
        logger.warning("the int8 graph gives another top label than torch on %.1f%% of the check texts; ship fp32 "
                       "if that matters", 100 * (1 - parity["head"]["int8"]["agreement"]))  # fmt: skip
    return parity


def _reference(model: Student | Teacher | Path) -> tuple[Encode, str]:
    """The encode function the head is checked on, and what it is."""
    if isinstance(model, Path):
        return OnnxEmbedder(model).encode, f"the fp32 vectors of export {str(model)!r}"
    if isinstance(model, Teacher):
        return model.sentence_vectors, f"the vectors of teacher {model.name!r}"
    return model.eval().encode, f"the vectors of the torch {model.kind} student"


def check_dim(head: ClassifierHead, model: Student | Teacher | Path) -> None:
    dim = ExportConfig.read(model / CONFIG_FILE).dim if isinstance(model, Path) else model.dim
    if dim != head.config.dim:
        raise DistillError(f"the head takes {head.config.dim}-dim vectors; the model gives {dim}: use the model it "
                           f"was trained on ({head.config.model})")  # fmt: skip


def append_head(path: Path, head: ClassifierHead) -> None:
    """Append the head after the `sentence_vectors` of the graph in `path`, with its `probabilities` output."""
    model = onnx.load(str(path))
    graph = model.graph
    nodes, weights = head_nodes(head)
    names = {n for node in graph.node for n in node.output} | {w.name for w in graph.initializer}
    clash = sorted(names & ({n for node in nodes for n in node.output} | {w.name for w in weights}))
    if clash:
        raise ValueError(f"{path} already has tensors named as the head's: {', '.join(clash)}")
    (vectors,) = [o for o in graph.output if o.name == OUTPUT_NAME]
    batch = vectors.type.tensor_type.shape.dim[0]  # the graph's own batch axis: a name, or a number if fixed
    graph.node.extend(nodes)
    graph.initializer.extend(weights)
    shape = [batch.dim_param or batch.dim_value, len(head.labels)]
    graph.output.append(helper.make_tensor_value_info(PROBABILITIES, TensorProto.FLOAT, shape))
    onnx.checker.check_model(model)
    onnx.save(model, str(path))


def head_nodes(head: ClassifierHead) -> tuple[list[onnx.NodeProto], list[onnx.TensorProto]]:
    """The head's layers as ONNX nodes from `sentence_vectors` to `probabilities`, and their weights.

    A Linear is a Gemm with the weight as torch keeps it, (out, in), transposed by the Gemm; a GELU
    is torch's exact form, 0.5 x (1 + erf(x / sqrt 2)), built from Erf (opset 17 has no Gelu).
    """
    x, nodes, weights = OUTPUT_NAME, [], []
    for index, layer in enumerate(head.layers):
        name = f"{PREFIX}layers.{index}"
        if isinstance(layer, nn.Linear):
            w, b = (p.detach().float().numpy() for p in (layer.weight, layer.bias))
            weights += [numpy_helper.from_array(w, f"{name}.weight"), numpy_helper.from_array(b, f"{name}.bias")]
            nodes.append(helper.make_node("Gemm", [x, f"{name}.weight", f"{name}.bias"], [f"{name}.out"], transB=1))
        elif isinstance(layer, nn.GELU) and layer.approximate == "none":
            weights += [_scalar(f"{name}.sqrt_half", math.sqrt(0.5)), _scalar(f"{name}.one", 1.0),
                        _scalar(f"{name}.half", 0.5)]  # fmt: skip
            nodes += [
                helper.make_node("Mul", [x, f"{name}.sqrt_half"], [f"{name}.scaled"]),
                helper.make_node("Erf", [f"{name}.scaled"], [f"{name}.erf"]),
                helper.make_node("Add", [f"{name}.erf", f"{name}.one"], [f"{name}.gate"]),
                helper.make_node("Mul", [x, f"{name}.gate"], [f"{name}.gated"]),
                helper.make_node("Mul", [f"{name}.gated", f"{name}.half"], [f"{name}.out"]),
            ]
        else:
            raise ValueError(f"no ONNX form for the head's layer {layer!r}")
        x = f"{name}.out"  # (batch, width of this layer)
    nodes.append(helper.make_node("Softmax", [x], [PROBABILITIES], axis=1))  # (batch, classes)
    return nodes, weights


def _scalar(name: str, value: float) -> onnx.TensorProto:
    return numpy_helper.from_array(np.array(value, dtype=np.float32), name)


def write_head_files(directory: Path, head: ClassifierHead, name: str) -> None:
    """`head.json` (the head's config, as its own folder holds it) and `config.json` naming the head and outputs (a
    tuned head's export says more: `distill.heads.untuned.add_untuned`)."""
    write_json(directory / HEAD_FILE, {"format": FORMAT_VERSION, "kind": head.config.kind, "output": PROBABILITIES,
                                       "config": dataclasses.asdict(head.config)})  # fmt: skip
    config = read_json(directory / CONFIG_FILE)
    config.update(name=name, head=HEAD_FILE, outputs=[OUTPUT_NAME, PROBABILITIES])
    (directory / CONFIG_FILE).write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")


def check_head(directory: Path, texts: Sequence[str], expected: np.ndarray) -> dict[str, Any]:
    """The fp32 and int8 graphs' probabilities against the torch head's `expected` (len(texts), classes).

    Raises DistillError when fp32 differs by more than `HEAD_TOLERANCE`.
    """
    fp32 = _agreement(OnnxClassifier(directory).predict_proba(texts), expected)
    difference = fp32["max_abs_difference"]
    if not difference <= HEAD_TOLERANCE:
        raise DistillError(f"the ONNX head's probabilities differ from the torch head's by {difference:.2e} (limit "
                           f"{HEAD_TOLERANCE:.0e}); nothing was written")  # fmt: skip
    int8 = _agreement(OnnxClassifier(directory, precision="int8").predict_proba(texts), expected)
    return {"texts": len(texts), "fp32": {**fp32, "tolerance": HEAD_TOLERANCE}, "int8": int8}


def _agreement(probabilities: np.ndarray, expected: np.ndarray) -> dict[str, float]:
    """Max absolute difference of two (n, classes) probability arrays, and the share of rows with the same top label."""
    return {"max_abs_difference": float(np.abs(probabilities - expected).max()),
            "agreement": float(np.mean(probabilities.argmax(axis=1) == expected.argmax(axis=1)))}  # fmt: skip


def read_texts(path: str | Path, text_column: str = "text", limit: int = 256) -> list[str]:
    """The first `limit` non-empty texts of a .txt file (one a line) or of a table's `text_column`."""
    path = Path(path)
    if path.suffix.lower() == ".txt":
        if not path.is_file():
            raise DistillError(f"text file {str(path)!r} does not exist")
        texts = [line.strip() for line in path.read_text(encoding="utf-8").splitlines()]
    else:
        frame = read_table(path, columns=(text_column,))
        texts = [t for t in frame[text_column] if isinstance(t, str)]
    texts = [t for t in texts if t.strip()][:limit]
    if not texts:
        raise DistillError(f"{str(path)!r} holds no texts for the parity check")
    return texts
