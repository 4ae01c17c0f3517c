"""`distill export`: a student to ONNX, fp32 and int8, each checked against torch (`distill.export.run`: every
student of a run).

An export folder holds what production needs and nothing else (read by `distill.runtime`):

    model.onnx        fp32: (input_ids, attention_mask) -> pooled, L2-normalised sentence_vectors
    model_int8.onnx   the same in int8, weights per output channel and activations per row, so a text's
                      vector does not depend on its batch (`distill.export.quantize`); the static
                      student's two: a lookup on flat token ids, its table in int8 for the second
                      (`distill.export.static_graph`)
    tokenizer.json    the student's tokenizer (truncation to max_length built in)
    config.json       dim, pooling, normalisation, max length, special tokens, teacher, version
    parity.json       what the checks below measured
    basis.npz         the teacher's basis (`distill.runtime.vectors.Basis`), when given: what the runtime cuts
                      shorter vectors from (`dimensions`); an export without one gives full vectors only

The fp32 graph must reproduce the torch student to `FP32_TOLERANCE` (max absolute difference)
on held-out text or nothing is written. Both graphs must give every text the same vector alone, in
batches of other texts and with extra padding, to `BATCH_TOLERANCE`, or nothing is written. The int8
graph is measured, not required to match: its cosine to the fp32 student and its loss of fidelity to
the teacher go into `parity.json`, with a warning above `INT8_WARN_LOSS`.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Sequence
from importlib.metadata import version
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import torch

from distill.errors import DistillError
from distill.export.quantize import quantize, quiet_root_logger
from distill.export.static_graph import export_static
from distill.io import atomic_dir, write_json
from distill.runtime import INPUT_NAMES, MODEL_FILES, OUTPUT_NAME, TOKENIZER_FILE, ExportConfig, OnnxEmbedder
from distill.runtime.consistency import batch_dependence
from distill.runtime.vectors import BASIS_FILE, Basis
from students.base import Student
from students.static import StaticStudent

logger = logging.getLogger(__name__)

FP32_TOLERANCE = 1e-4
BATCH_TOLERANCE = 1e-6  # max absolute difference of a text's vector alone and beside others, either precision
INT8_WARN_LOSS = 0.01
OPSET = 17
EXPORT_DIR = "export"
PARITY_FILE = "parity.json"
# 2: the static student's flat graphs; 3: per-row int8, the same vector in any batch. An export of an older format is
# re-made by `distill eval`
EXPORT_FORMAT = 3
EDGE_TEXTS = ["", "a", "word " * 2000]  # empty, one token, far past any max length


def export_student(
    student: Student,
    directory: str | Path,
    *,
    name: str,
    texts: Sequence[str],
    teacher_vectors: np.ndarray | None = None,
    fuse: bool = False,
    basis: Basis | None = None,
) -> dict[str, Any]:
    """Write `student` to `directory` as ONNX fp32 and int8 and return the parity figures.

    `texts` are held-out texts for the checks; `teacher_vectors` (len(texts), dim), when given,
    let the check report each precision's fidelity to the teacher. `basis` (the teacher's, from
    `distill.data.basis.teacher_basis`) is written beside the graphs, for shorter vectors. Raises DistillError (and
    writes nothing) when the fp32 graph disagrees with torch by more than `FP32_TOLERANCE`.
    With `fuse`, a student with attention has onnxruntime's transformer fusions applied to its fp32
    graph, checked against torch again; a fused graph that fails the check is dropped, with a warning.

    NOTE: not by default: on onnxruntime 1.32's CPU provider (2 threads) the fused graph of the default
    transformer student ran 0.89x the traced one on short texts and 0.95x on sentences, and its int8
    0.99x / 0.90x (`python -m eval.experiments.fusion`): the session already applies its own fusions at load.
    Fused graphs are for execution providers whose kernels want them (CUDA, TensorRT).
    """
    if not texts:
        raise DistillError("the parity check needs held-out texts; got none")
    if basis is not None and basis.dim != student.dim:
        raise DistillError(f"the basis has {basis.dim} dimensions and the student {student.dim}: give the basis of "
                           "the teacher it was distilled from")  # fmt: skip
    student = student.eval()
    texts = [*texts, *EDGE_TEXTS]
    expected = student.encode(texts)
    with atomic_dir(Path(directory)) as tmp:
        fp32, int8 = tmp / MODEL_FILES["fp32"], tmp / MODEL_FILES["int8"]
        lookup = isinstance(student, StaticStudent)  # a table lookup: its own fp32 and int8 graphs, flat inputs
        if lookup:
            export_static(student, fp32, int8)
        else:
            export_onnx(student, fp32)
        student.tokenizer.save(str(tmp / TOKENIZER_FILE))
        export_config(student, name).write(tmp / "config.json")
        if basis is not None:
            basis.save(tmp / BASIS_FILE)
        traced = fp32_difference(student, tmp, texts, expected)
        fusion = fuse_graph(student, tmp, texts, expected) if fuse and student.attention_shape() else {"fused": False}
        if not lookup:
            quantize(fp32, int8, fused=fusion["fused"])
        final = fusion["max_abs_difference"] if fusion["fused"] else traced  # the fp32 graph kept, as measured
        parity = check_parity(tmp, texts, expected, teacher_vectors, fp32_difference=final)
        parity["fp32"]["traced_max_abs_difference"] = traced
        parity["fusion"] = fusion
        parity["bytes"] = {precision: (tmp / file).stat().st_size for precision, file in MODEL_FILES.items()}
        write_json(tmp / PARITY_FILE, parity)
    if parity["int8"]["fidelity_loss"] is not None and parity["int8"]["fidelity_loss"] > INT8_WARN_LOSS:
        logger.warning("%s: int8 loses %.4f fidelity to the teacher (more than %.2f); ship fp32 if that matters",
                       name, parity["int8"]["fidelity_loss"], INT8_WARN_LOSS)  # fmt: skip
    return parity


def export_onnx(student: Student, path: Path) -> None:
    """The student's own forward, traced on a small batch, with dynamic batch and sequence axes."""
    example = student.tokenize(["an example sentence to trace", "another"])
    axes = {"input_ids": {0: "batch", 1: "sequence"}, "attention_mask": {0: "batch", 1: "sequence"},
            OUTPUT_NAME: {0: "batch"}}  # fmt: skip
    module = student.export_module().eval()
    with torch.inference_mode(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer warnings about Python control flow on shapes
        # NOTE: the TorchScript exporter (dynamo=False): it traces every student here exactly and
        # needs no extra packages; the dynamo exporter needs onnxscript and is slower to run.
        torch.onnx.export(
            module, (example["input_ids"], example["attention_mask"]), str(path),
            input_names=list(INPUT_NAMES), output_names=[OUTPUT_NAME], dynamic_axes=axes,
            opset_version=OPSET, dynamo=False,
        )  # fmt: skip
    onnx.checker.check_model(str(path))


def fuse_graph(student: Student, directory: Path, texts: Sequence[str], expected: np.ndarray) -> dict[str, Any]:
    """Replace the fp32 graph in `directory` by onnxruntime's fused transformer graph when it still matches torch.

    The fusions (Attention, SkipLayerNormalization, BiasGelu, EmbedLayerNormalization) are pattern
    matches on the traced graph: on BERT-like layers they apply, on others some or none do. The
    fused graph must agree with `expected` (the torch student) to `FP32_TOLERANCE` like the traced
    one; if it does not, or no fusion applied, the traced graph stays and the figures say so.
    """
    from onnxruntime.transformers.optimizer import optimize_model

    heads, hidden = student.attention_shape()
    fp32 = directory / MODEL_FILES["fp32"]
    traced = directory / "traced.onnx"
    fp32.rename(traced)
    try:
        with quiet_root_logger():  # NOTE: the optimizer logs every fusion pass at INFO on the root logger
            model = optimize_model(str(traced), model_type="bert", num_heads=heads, hidden_size=hidden, opt_level=0)
            ops = {op: n for op, n in model.get_fused_operator_statistics().items() if n}
            model.save_model_to_file(str(fp32))
    except Exception as e:  # NOTE: the optimizer's pattern matching can fail on a graph it does not know
        logger.warning("%s: onnxruntime's transformer fusions failed (%s); the unfused graph is kept", student.kind, e)
        ops = {}
    if ops:
        try:
            difference = fp32_difference(student, directory, texts, expected, raise_above=False)
        except Exception as e:  # NOTE: a wrongly matched pattern can give a graph onnxruntime refuses to run
            logger.warning("%s: the fused graph does not run (%s); the unfused graph is kept", student.kind,
                           str(e).splitlines()[0][:200])  # fmt: skip
            difference = float("inf")
        if difference <= FP32_TOLERANCE:
            traced.unlink()
            logger.info("%s: fused %s; fp32 max |diff| to torch %.1e", student.kind,
                        ", ".join(f"{n} {op}" for op, n in ops.items()), difference)  # fmt: skip
            return {"fused": True, "ops": ops, "max_abs_difference": difference}
        if difference < float("inf"):
            logger.warning("%s: the fused graph differs from torch by %.1e (limit %.0e); the unfused graph is kept",
                           student.kind, difference, FP32_TOLERANCE)  # fmt: skip
    fp32.unlink(missing_ok=True)
    traced.rename(fp32)
    return {"fused": False, "ops": ops}


def export_config(student: Student, name: str) -> ExportConfig:
    return ExportConfig(
        name=name,
        kind=student.kind,
        dim=student.dim,
        pooling=getattr(student.config, "pooling", "mean"),
        normalize=True,
        max_length=student.config.max_length,
        add_special_tokens=student.special_tokens,
        teacher=student.config.teacher,
        version=version("distill-embeddings"),
        prompt=student.config.prompt,
        inputs="flat" if isinstance(student, StaticStudent) else "padded",
    )


def fp32_difference(
    student: Student, directory: Path, texts: Sequence[str], expected: np.ndarray, *, raise_above: bool = True
) -> float:
    """Max absolute difference of the fp32 graph in `directory` to the torch vectors `expected`.

    Raises DistillError above `FP32_TOLERANCE` unless `raise_above` is False.
    """
    vectors = OnnxEmbedder(directory, precision="fp32").encode(texts)
    difference = float(np.abs(vectors - expected).max())
    if raise_above and not difference <= FP32_TOLERANCE:
        raise DistillError(f"the ONNX export of {student.kind!r} differs from the torch student by {difference:.2e} "
                           f"(limit {FP32_TOLERANCE:.0e}); nothing was written")  # fmt: skip
    return difference


def check_parity(
    directory: Path,
    texts: Sequence[str],
    expected: np.ndarray,
    teacher_vectors: np.ndarray | None,
    *,
    fp32_difference: float,
) -> dict[str, Any]:
    """The figures of the final graphs: fp32 against torch (`fp32_difference`, measured by the export as it
    checked that graph), int8 against the torch vectors `expected` and against the teacher, and how much each
    graph's vector of a text depends on its batch.

    Raises DistillError when either graph gives a text another vector beside other texts than alone.
    """
    int8 = OnnxEmbedder(directory, precision="int8").encode(texts)
    result: dict[str, Any] = {
        "format": EXPORT_FORMAT,
        "texts": len(texts),
        "fp32": {"max_abs_difference": fp32_difference, "tolerance": FP32_TOLERANCE},
        "int8": {"mean_cosine_to_fp32": mean_cosine(int8, expected), "min_cosine_to_fp32": min_cosine(int8, expected),
                 "fidelity": None, "fidelity_loss": None},
    }  # fmt: skip
    for precision in MODEL_FILES:
        result[precision]["batch_dependence"] = check_batch_independence(directory, precision, texts)
    if teacher_vectors is not None:
        n = len(teacher_vectors)  # NOTE: the edge texts at the end have no teacher vectors
        torch_fidelity = mean_cosine(expected[:n], teacher_vectors)
        result["torch_fidelity"] = torch_fidelity
        result["int8"]["fidelity"] = mean_cosine(int8[:n], teacher_vectors)
        result["int8"]["fidelity_loss"] = torch_fidelity - result["int8"]["fidelity"]
    return result


def check_batch_independence(directory: Path, precision: str, texts: Sequence[str]) -> dict[str, float]:
    """`batch_dependence` of the `precision` graph in `directory`; DistillError above `BATCH_TOLERANCE`."""
    dependence = batch_dependence(OnnxEmbedder(directory, precision=precision), texts)
    worst = max(dependence.values())
    if not worst <= BATCH_TOLERANCE:
        setting = max(dependence, key=dependence.__getitem__).replace("_", " ")
        raise DistillError(f"the {precision} graph gives a text another vector in a batch ({setting}) than alone: "
                           f"max difference {worst:.1e}, limit {BATCH_TOLERANCE:.0e}; nothing was written")  # fmt: skip
    return {**dependence, "tolerance": BATCH_TOLERANCE}


def mean_cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.mean(_cosines(a, b)))


def min_cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.min(_cosines(a, b)))


def _cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise cosine; two zero vectors (an empty text, for a student without [CLS]) count as agreeing."""
    norm_a, norm_b = np.linalg.norm(a, axis=1), np.linalg.norm(b, axis=1)
    cosines = (a * b).sum(axis=1) / np.maximum(norm_a * norm_b, 1e-12)
    return np.where((norm_a == 0) & (norm_b == 0), 1.0, cosines)
