"""Shared fixtures: a tiny BERT built in memory around the real tokenizer, and the real teacher."""

from __future__ import annotations

import pytest
import torch
from transformers import BertConfig, BertModel, BertTokenizerFast

from distill.corpus import assign_splits
from distill.targets import Targets, build_targets
from distill.teacher import DEFAULT_TEACHER, Pooling, Teacher, resolve_teacher

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
