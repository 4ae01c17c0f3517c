"""`distill head export` of a tokens head: a tagger and its transformer in one ONNX graph per precision.

The graph is the student's forward with its token vectors, and the head on every token after them:

    model.onnx        (input_ids, attention_mask) -> sentence_vectors (batch, dim)
                                                  and token_probabilities (batch, seq, tags)
    model_int8.onnx   the same in int8, activations per row (`distill.export.quantize`)
    head.json         the tagger's config: its tags, in the order of the probabilities' last axis
    config.json       the export's config, with "head" and "outputs" added
    tokenizer.json    the student's tokenizer
    parity.json       the checks below
    embeddings/       for a tagger tuned with its model (`--tune`): the untuned model, for embeddings
                      (`distill.heads.untuned`; its figures under parity.json's "embeddings")

`distill.runtime.OnnxTagger` reads each word at its first sub-token, as the tagger was trained. The fp32 graph's
word probabilities must match the torch head on the torch student's word vectors to `HEAD_TOLERANCE` on the check
texts, and its sentence vectors the torch student's to `FP32_TOLERANCE`, or nothing is written; int8 is measured.
"""

from __future__ import annotations

import dataclasses
import json
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import torch
from torch import nn

from distill.errors import DistillError
from distill.export.exporter import (
    EDGE_TEXTS,
    FP32_TOLERANCE,
    OPSET,
    PARITY_FILE,
    export_config,
    fp32_difference,
)
from distill.export.quantize import quantize
from distill.heads.head import FORMAT_VERSION, ClassifierHead
from distill.heads.tagging import student_token_encoder
from distill.heads.untuned import add_untuned
from distill.io import atomic_dir, write_json
from distill.runtime import CONFIG_FILE, INPUT_NAMES, MODEL_FILES, OUTPUT_NAME, TOKENIZER_FILE
from distill.runtime.tagger import TAGGER_HEAD_FILE, TOKEN_PROBABILITIES, OnnxTagger, split_words
from students.transformer import TransformerStudent

HEAD_TOLERANCE = 1e-4  # max absolute difference of the fp32 graph's word probabilities to torch's


class TaggerGraph(nn.Module):
    """The student's sentence vectors, and the tagger's probabilities at every token (batch, seq, tags)."""

    def __init__(self, student: TransformerStudent, head: ClassifierHead) -> None:
        super().__init__()
        self.student, self.head = student, head

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        tokens, sentence = self.student.forward_with_tokens(input_ids, attention_mask)  # (b, s, token_dim), (b, dim)
        return sentence, torch.softmax(self.head(tokens), dim=-1)


def export_tagger(
    head: ClassifierHead, student: TransformerStudent, directory: str | Path, *, texts: Sequence[str]
) -> dict[str, Any]:
    """Write `student` with the tokens head `head` to `directory` (its name is the model's name in `config.json`)."""
    token_dim = student.config.token_dim or student.dim
    if head.config.dim != token_dim:
        raise DistillError(f"the tagger takes {head.config.dim}-dim token vectors; the model gives {token_dim}: use "
                           f"the model it was trained on ({head.config.model})")  # fmt: skip
    if not texts:
        raise DistillError("the tagger's parity check needs texts; got none")
    student, head = student.eval(), head.eval()
    checked = [*texts, *EDGE_TEXTS]
    sentences = [split_words(t) for t in checked]
    expected = word_probabilities(student, head, sentences)
    directory = Path(directory)
    with atomic_dir(directory) as tmp:
        trace(student, head, tmp / MODEL_FILES["fp32"])
        quantize(tmp / MODEL_FILES["fp32"], tmp / MODEL_FILES["int8"])
        student.tokenizer.save(str(tmp / TOKENIZER_FILE))
        config = dataclasses.asdict(export_config(student, directory.name))
        config.update(head=TAGGER_HEAD_FILE, outputs=[OUTPUT_NAME, TOKEN_PROBABILITIES])
        (tmp / CONFIG_FILE).write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
        write_json(tmp / TAGGER_HEAD_FILE, {"format": FORMAT_VERSION, "kind": head.config.kind,
                                            "output": TOKEN_PROBABILITIES,
                                            "config": dataclasses.asdict(head.config)})  # fmt: skip
        vectors = fp32_difference(student, tmp, checked, student.encode(checked))
        fp32 = _agreement(OnnxTagger(tmp).predict_proba(sentences), expected)
        if not fp32["max_abs_difference"] <= HEAD_TOLERANCE:
            raise DistillError(f"the ONNX tagger's probabilities differ from the torch tagger's by "
                               f"{fp32['max_abs_difference']:.2e} (limit {HEAD_TOLERANCE:.0e}); nothing was "
                               "written")  # fmt: skip
        int8 = _agreement(OnnxTagger(tmp, precision="int8").predict_proba(sentences), expected)
        parity = {"texts": len(checked), "fp32": {"max_abs_difference": vectors, "tolerance": FP32_TOLERANCE},
                  "head": {"task": "tokens", "labels": head.labels, "kind": head.config.kind, "texts": len(checked),
                           "words": int(sum(map(len, sentences))),
                           "fp32": {**fp32, "tolerance": HEAD_TOLERANCE}, "int8": int8},
                  "bytes": {p: (tmp / f).stat().st_size for p, f in MODEL_FILES.items()}}  # fmt: skip
        parity.update(add_untuned(head, tmp, texts=texts))
        write_json(tmp / PARITY_FILE, parity)
    return parity


def trace(student: TransformerStudent, head: ClassifierHead, path: Path) -> None:
    example = student.tokenize(["an example sentence to trace", "another"])
    axes = {"input_ids": {0: "batch", 1: "sequence"}, "attention_mask": {0: "batch", 1: "sequence"},
            OUTPUT_NAME: {0: "batch"}, TOKEN_PROBABILITIES: {0: "batch", 1: "sequence"}}  # fmt: skip
    graph = TaggerGraph(student.export_module(), head).eval()
    with torch.inference_mode(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer warnings about Python control flow on shapes
        torch.onnx.export(graph, (example["input_ids"], example["attention_mask"]), str(path),
                          input_names=list(INPUT_NAMES), output_names=[OUTPUT_NAME, TOKEN_PROBABILITIES],
                          dynamic_axes=axes, opset_version=OPSET, dynamo=False)  # fmt: skip
    onnx.checker.check_model(str(path))


def word_probabilities(
    student: TransformerStudent, head: ClassifierHead, sentences: list[list[str]]
) -> list[np.ndarray]:
    """What the torch tagger gives each word: the head's softmax on the word's vector (NaN rows where it has none)."""
    out = []
    for vectors in student_token_encoder(student)(sentences):  # (n_words, token_dim) each
        with torch.inference_mode():
            out.append(torch.softmax(head(torch.from_numpy(vectors)), dim=-1).numpy())  # NaN rows stay NaN
    return out


def _agreement(probabilities: list[np.ndarray], expected: list[np.ndarray]) -> dict[str, float]:
    """Max absolute difference of the words' probabilities, and the share of words with the same top tag."""
    got, want = np.concatenate(probabilities), np.concatenate(expected)
    if not np.array_equal(np.isnan(got), np.isnan(want)):
        raise ValueError("the ONNX tagger and torch read different words")  # a bug, not a user's mistake
    kept = ~np.isnan(want).any(axis=1)
    return {"max_abs_difference": float(np.abs(got[kept] - want[kept]).max(initial=0.0)),
            "agreement": float(np.mean(got[kept].argmax(axis=1) == want[kept].argmax(axis=1)))}  # fmt: skip
