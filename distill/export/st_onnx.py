"""The `onnx/` folder sentence-transformers' ONNX backend reads, written into a transformer student's own folder.

`SentenceTransformer(path, backend="onnx")` runs its Transformer module with optimum's
`ORTModelForFeatureExtraction` on `onnx/model.onnx`, which gives `last_hidden_state`, and then its own Pooling,
Dense and Normalize modules in torch (transformers.js reads the same folder). So these graphs are the student's
encoder alone, not `distill export`'s pooled graph:

    onnx/model.onnx                   fp32: (input_ids, attention_mask) -> last_hidden_state (batch, seq, hidden)
    onnx/model_qint8_quantized.onnx   int8, activations per row, as `distill export` makes it
                                      (`model_kwargs={"file_name": "onnx/model_qint8_quantized.onnx"}`)

Checked as the backend computes: the graph's hidden states through the student's pooling and head must match the
torch student to `FP32_TOLERANCE`, or nothing is written; int8 is measured.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import torch
from torch import nn

from distill.errors import DistillError
from distill.export.exporter import BATCH_TOLERANCE, EDGE_TEXTS, FP32_TOLERANCE, OPSET, mean_cosine, min_cosine
from distill.export.quantize import quantize
from distill.io import atomic_dir
from distill.teacher.model import Pooling, pool
from students.transformer import TransformerStudent

ST_ONNX_DIR = "onnx"
ST_ONNX_FILES = {"fp32": "model.onnx", "int8": "model_qint8_quantized.onnx"}
HIDDEN = "last_hidden_state"  # the output name optimum's ORTModelForFeatureExtraction reads


class EncoderGraph(nn.Module):
    """The student's encoder alone, as sentence-transformers' Transformer module runs it."""

    def __init__(self, student: TransformerStudent) -> None:
        super().__init__()
        self.encoder = student.export_module().encoder

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state


def export_st_onnx(student: TransformerStudent, student_dir: str | Path, texts: Sequence[str]) -> dict[str, Any]:
    """Write `student_dir/onnx/` (fp32 and int8) and return what the check measured."""
    if student.hf_tokenizer is None:
        raise DistillError("this transformer student has no transformers tokenizer; save and load it again")
    student = student.eval()
    texts = [*texts, *EDGE_TEXTS]
    expected = student.encode(texts)
    with atomic_dir(Path(student_dir) / ST_ONNX_DIR) as tmp:
        fp32, int8 = (tmp / ST_ONNX_FILES[p] for p in ("fp32", "int8"))
        trace_encoder(student, fp32)
        difference = float(np.abs(backend_vectors(student, fp32, texts) - expected).max())
        if not difference <= FP32_TOLERANCE:
            raise DistillError(f"the sentence-transformers ONNX graph differs from the torch student by "
                               f"{difference:.2e} (limit {FP32_TOLERANCE:.0e}); nothing was written")  # fmt: skip
        quantize(fp32, int8)
        session = ort.InferenceSession(str(int8), providers=["CPUExecutionProvider"])
        quantized = backend_vectors(student, session, texts)
        alone = np.vstack([backend_vectors(student, session, [text]) for text in texts])
        dependence = float(np.abs(quantized - alone).max())  # the texts batched (padded to the longest) and alone
        if not dependence <= BATCH_TOLERANCE:
            raise DistillError(f"the sentence-transformers int8 graph gives a text another vector in a batch than "
                               f"alone ({dependence:.1e}, limit {BATCH_TOLERANCE:.0e}); nothing was "
                               "written")  # fmt: skip
    return {"files": {p: f"{ST_ONNX_DIR}/{f}" for p, f in ST_ONNX_FILES.items()}, "texts": len(texts),
            "fp32": {"max_abs_difference": difference, "tolerance": FP32_TOLERANCE},
            "int8": {"mean_cosine_to_fp32": mean_cosine(quantized, expected),
                     "min_cosine_to_fp32": min_cosine(quantized, expected),
                     "batch_dependence": {"batched": dependence, "tolerance": BATCH_TOLERANCE}}}  # fmt: skip


def trace_encoder(student: TransformerStudent, path: Path) -> None:
    example = student.tokenize(["an example sentence to trace", "another"])
    axes = {"input_ids": {0: "batch", 1: "sequence"}, "attention_mask": {0: "batch", 1: "sequence"},
            HIDDEN: {0: "batch", 1: "sequence"}}  # fmt: skip
    with torch.inference_mode(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer warnings about Python control flow on shapes
        torch.onnx.export(EncoderGraph(student).eval(), (example["input_ids"], example["attention_mask"]), str(path),
                          input_names=["input_ids", "attention_mask"], output_names=[HIDDEN], dynamic_axes=axes,
                          opset_version=OPSET, dynamo=False)  # fmt: skip
    onnx.checker.check_model(str(path))


def backend_vectors(
    student: TransformerStudent, graph: Path | ort.InferenceSession, texts: Sequence[str]
) -> np.ndarray:
    """What sentence-transformers' ONNX backend computes: the transformers tokenizer (padded batch, the prompt
    before each text), the graph's hidden states, then pooling, the Dense modules and normalisation."""
    tokenizer = student.hf_tokenizer
    batch = tokenizer([student.config.prompt + t for t in texts], padding=True, truncation=True,
                      max_length=student.config.max_length, return_tensors="np")  # fmt: skip
    session = (
        graph
        if isinstance(graph, ort.InferenceSession)
        else ort.InferenceSession(str(graph), providers=["CPUExecutionProvider"])
    )
    feeds = {i.name: batch[i.name].astype(np.int64) for i in session.get_inputs()}
    hidden = torch.from_numpy(session.run([HIDDEN], feeds)[0])  # (batch, seq, hidden)
    mask = torch.from_numpy(batch["attention_mask"])
    with torch.inference_mode():
        return student._head(pool(hidden, mask, Pooling(student.config.pooling))).numpy()
