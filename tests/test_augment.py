"""Augmented training texts: new forms, training split only, the same each run."""

from pathlib import Path

import pytest

from distill.data.augment import Augment, augmented, parse
from distill.data.corpus import Split
from distill.errors import DistillError
from distill.teacher.model import Teacher
from distill.training.config import RunConfig
from distill.training.pipeline import run_from_model

TEXTS = ["The committee approved the new budget on Tuesday.", "Rain is expected, across the north.", "Short one."]


def test_each_augmentation_makes_its_form() -> None:
    spans = list(augmented(TEXTS, [Augment.SPANS]))
    assert len(spans) == 2 and all(2 <= len(s.split()) <= 8 and s in " ".join(TEXTS) for s in spans)
    assert list(augmented(TEXTS[1:2], [Augment.WORDS])) == ["rain is expected across the north"]
    assert next(iter(augmented(TEXTS[:2], [Augment.JOIN]))) == f"{TEXTS[0]} {TEXTS[1]}"
    assert list(augmented(TEXTS, [Augment.SPANS, Augment.DROP])) == list(augmented(TEXTS, parse("spans,drop")))
    with pytest.raises(DistillError, match="choose from spans, words, drop, join"):
        parse("spans,typos")
    assert parse("none") == [] and parse("spans,none") == [Augment.SPANS]
    passage = "The cat sat on the mat today. It then slept for many long hours. Nobody woke it up at all."
    (sentence,) = augmented([passage, TEXTS[0]], [Augment.SENTENCES])  # one of a passage's; none of one sentence
    assert sentence in passage and sentence.endswith(".") and sentence != passage


def test_augmented_texts_join_the_training_split_only(tiny_teacher: Teacher, corpus: list[str], tmp_path: Path) -> None:
    config = RunConfig(output=str(tmp_path / "run"), cache_dir=str(tmp_path / "cache"), augment="spans,words",
                       train={"epochs": 1})  # fmt: skip
    summary = run_from_model(tiny_teacher, corpus, config)
    plain = RunConfig(output=str(tmp_path / "plain"), cache_dir=str(tmp_path / "cache"), train={"epochs": 1})
    before = run_from_model(tiny_teacher, corpus, plain)
    assert summary.texts["valid"] == before.texts["valid"] and summary.texts["test"] == before.texts["test"]
    assert summary.texts["train"] > 1.8 * before.texts["train"]
    assert Split.TRAIN.name.lower() in summary.texts


def test_bags_draw_whole_words_of_the_vocabulary(tiny_teacher: Teacher) -> None:
    from distill.data.augment import bags, vocabulary_words
    from distill.teacher.tokens import Speller

    words = vocabulary_words(Speller(tiny_teacher.tokenizer.backend_tokenizer).spellings())
    assert len(words) > 10_000 and "the" in words and not any(w.startswith("##") for w in words)
    drawn = list(bags(words, 50, seed=1))
    assert drawn == list(bags(words, 50, seed=1)) and len(set(drawn)) == 50
    assert all(3 <= len(b.split()) <= 10 and set(b.split()) <= set(words) for b in drawn)
    assert len(list(augmented(TEXTS * 4, [Augment.BAGS], words=words))) == 6  # one bag for two training texts


def test_questions_and_passages_give_the_shapes_users_embed() -> None:
    from distill.data.augment import passages

    questions = list(augmented(TEXTS, [Augment.QUESTIONS]))
    assert len(questions) == 2 and all(q == q.lower() and 2 <= len(q.split()) <= 9 for q in questions)
    texts = [f"Sentence number {i} says something about topic {i % 7} here." for i in range(80)]
    made = list(passages(texts))
    assert len(made) == 10  # one for every 8 texts
    assert all(60 <= len(p.split()) <= 180 for p in made)
    assert made[0].startswith(texts[0]) and texts[1] in made[0]  # consecutive texts, in order
    assert made == list(augmented(texts, parse("passages")))  # the same each run


def test_cut_passages_fit_the_teacher_and_keep_every_sentence() -> None:
    from distill.data.corpus import cut_at_sentences

    text = " ".join(f"Sentence {i} has exactly six words." for i in range(10))
    pieces = cut_at_sentences(text, lambda t: len(t.split()), 20)
    assert all(len(p.split()) <= 20 for p in pieces) and len(pieces) == 4
    assert " ".join(pieces) == text
    assert cut_at_sentences("Short text.", lambda t: 99, 20) == ["Short text."]


def test_passages_cut_mode_cuts_long_corpus_texts(tiny_teacher: Teacher, corpus: list[str], tmp_path: Path) -> None:
    long_texts = [" ".join(corpus[i : i + 12]) for i in range(0, 240, 12)]
    texts = corpus + long_texts
    whole = run_from_model(tiny_teacher, texts, RunConfig(output=str(tmp_path / "w"), cache_dir=str(tmp_path / "c"),
                                                          train={"epochs": 1}))  # fmt: skip
    cut = run_from_model(tiny_teacher, texts, RunConfig(output=str(tmp_path / "p"), cache_dir=str(tmp_path / "c"),
                                                        passages="cut", train={"epochs": 1}))  # fmt: skip
    assert sum(cut.texts.values()) > sum(whole.texts.values())
    with pytest.raises(DistillError, match="passages must be whole or cut"):
        RunConfig(passages="halves")
