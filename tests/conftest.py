"""Shared fixtures: a tiny BERT built in memory around the real tokenizer, and the real teacher."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import BertConfig, BertModel, BertTokenizerFast

from distill.data.corpus import assign_splits
from distill.data.targets import Targets, build_targets
from distill.export.exporter import export_student
from distill.runtime import OnnxEmbedder
from distill.teacher.model import DEFAULT_TEACHER, Pooling, Teacher, resolve_teacher
from students.static import StaticConfig, StaticStudent
from students.transformer import TransformerStudent

SENTENCES = [
    "The cat sat on the mat.",
    "A dog barked at the mailman all morning.",
    "Stock markets fell sharply after the announcement.",
    "The river flows through the old town and into the sea.",
    "She plays the violin in the city orchestra.",
    "Rain is expected across the north of the country tomorrow.",
    "The committee approved the new budget on Tuesday.",
    "He cooked pasta with garlic and fresh tomatoes.",
    "Scientists discovered a new species of frog in the forest.",
    "The train to London was delayed by twenty minutes.",
    "Children played football in the park after school.",
    "The museum opened a new exhibition of modern art.",
]


@pytest.fixture(scope="session")
def tokenizer() -> BertTokenizerFast:
    return BertTokenizerFast.from_pretrained(str(resolve_teacher(DEFAULT_TEACHER)))


@pytest.fixture(scope="session")
def tiny_teacher(tokenizer: BertTokenizerFast) -> Teacher:
    """A 2-layer, 32-wide BERT with random weights: fast, no download, real tokenizer."""
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
        intermediate_size=64, max_position_embeddings=128,
    )  # fmt: skip
    return Teacher(BertModel(config), tokenizer, pooling=Pooling.MEAN, normalize=True, max_length=64, name="tiny")


@pytest.fixture(scope="session")
def real_teacher() -> Teacher:
    return Teacher.load(DEFAULT_TEACHER)


@pytest.fixture(scope="session")
def corpus() -> list[str]:
    """A few hundred distinct sentences: the test sentences recombined."""
    words = [s.rstrip(".").split() for s in SENTENCES]
    out = []
    for i, a in enumerate(words):
        for j, b in enumerate(words):
            if i != j:
                out.append(" ".join(a[: len(a) // 2] + b[len(b) // 2 :]) + ".")
    return SENTENCES + out


@pytest.fixture(scope="session")
def tiny_targets(tiny_teacher: Teacher, corpus: list[str], tmp_path_factory: pytest.TempPathFactory) -> Targets:
    """The tiny teacher's targets for `corpus`, built once per session."""
    return build_targets(tiny_teacher, corpus, assign_splits(corpus), tmp_path_factory.mktemp("tiny-cache"))


@pytest.fixture(scope="session")
def export_dir(tmp_path_factory: pytest.TempPathFactory, tokenizer: BertTokenizerFast) -> Path:
    """A tiny static student's export folder (`export_tiny_static`), made once: the runtime and service tests' model."""
    return export_tiny_static(tmp_path_factory.mktemp("export") / "static", tokenizer)


@pytest.fixture(scope="session")
def embedder(export_dir: Path) -> OnnxEmbedder:
    return OnnxEmbedder(export_dir, threads=1)


def export_tiny_static(directory: Path, tokenizer: BertTokenizerFast) -> Path:
    """A 16-wide static student with a random table over the real vocabulary, exported to ONNX."""
    config = StaticConfig(dim=16, vocab_size=tokenizer.vocab_size, max_length=32, teacher="tiny", factored=False)
    student = StaticStudent(config, tokenizer.backend_tokenizer)
    student.init_table(np.random.default_rng(0).standard_normal((tokenizer.vocab_size, 16)))
    export_student(student, directory, name="tiny-static", texts=SENTENCES[:4])
    return directory


def far_off_transformer_student(teacher: Teacher, targets: Targets) -> TransformerStudent:
    """A one-layer transformer student (the teacher's layer 1) with its encoder weights redrawn (seed 0): a tiny
    random teacher's one layer barely changes its vectors, so a plain copy would leave training nothing to learn."""
    student = TransformerStudent.from_teacher(teacher, targets, layers=[1])
    torch.manual_seed(0)
    with torch.no_grad():
        for p in student.encoder.encoder.parameters():
            p.copy_(torch.randn_like(p) * 0.5)
    return student
