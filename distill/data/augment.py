"""New text forms made from the training texts, so students learn the teacher, not one corpus's style.

Each augmentation turns a training text into another text the teacher then embeds like any
other: a short span of it (a query or a title), a span asked as a question, the words alone (no
punctuation, lower case: chat, search boxes), a few words dropped, one of its sentences (a
passage's sentence, which asks for the passage), it and the next training text joined, or it and
the texts after it joined into a passage of 60-180 words (what a retrieval corpus holds: the
teacher's mean pooling and attention behave differently there). One more kind
needs no text: bags of whole-word vocabulary tokens drawn uniformly, so that every row of a
static table meets the teacher, not only the tokens the corpus happens to hold. They are added to
the training split only, so validation and test stay the corpus as it was, and they are drawn
from a hash of the text (or the seed), so a run is the same for a seed and a corpus.
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Iterator, Sequence
from enum import Enum

import numpy as np

from distill.data.corpus import split_sentences
from distill.errors import DistillError

_PUNCTUATION = re.compile(r"[^\w\s']")


class Augment(str, Enum):
    SPANS = "spans"  # 2-8 consecutive words: a query, a title
    WORDS = "words"  # lower case, punctuation gone
    DROP = "drop"  # a fifth of the words dropped
    JOIN = "join"  # the text and the next training text as one
    BAGS = "bags"  # 3-10 whole-word vocabulary tokens drawn uniformly, one bag for every two training texts
    QUESTIONS = "questions"  # a 2-6 word span asked as a question ("what is ...?")
    PASSAGES = "passages"  # consecutive training texts joined to 60-180 words, one passage for every 8 texts
    SENTENCES = "sentences"  # one sentence of a text of several: a passage's sentence asks for the passage


PASSAGE_EVERY = 8  # training texts a passage: each text lands in about one passage
_QUESTIONS = ("what is {}?", "what are {}?", "who is {}?", "how does {} work?", "why {}?", "when did {}?",
              "where is {}?", "how to {}", "{}?", "what about {}?")  # fmt: skip


def parse(names: Sequence[str] | str) -> list[Augment]:
    """Augmentations by name ("spans,words" or a list; "none" for none); an unknown name is a user's error."""
    if isinstance(names, str):
        names = [n.strip() for n in names.split(",") if n.strip()]
    try:
        return [Augment(n) for n in names if n != "none"]
    except ValueError as e:
        raise DistillError(f"augment: {e}; choose from {', '.join(a.value for a in Augment)}") from e


def augmented(
    texts: Sequence[str], kinds: Sequence[Augment], seed: int = 0, words: Sequence[str] = ()
) -> Iterator[str]:
    """For each kind and each text of `texts` (the training texts), one new text (none where it would be too short).

    `words`: the whole-word tokens of the teacher's vocabulary, which `bags` draws from.
    """
    for kind in kinds:
        if kind is Augment.BAGS:
            yield from bags(words, len(texts) // 2, seed)
            continue
        if kind is Augment.PASSAGES:
            yield from passages(texts, seed)
            continue
        for i, text in enumerate(texts):
            rng = np.random.default_rng([seed, zlib.crc32(f"{kind.value}:{text}".encode())])
            new = _make(kind, text, texts[(i + 1) % len(texts)], rng)
            if new and new != text:
                yield new


def bags(words: Sequence[str], count: int, seed: int = 0) -> Iterator[str]:
    """`count` texts of 3-10 of `words` drawn uniformly: data-free inputs that reach every word of a vocabulary."""
    if not words:
        raise DistillError("augment bags: the teacher's vocabulary has no whole-word tokens to draw from")
    rng = np.random.default_rng([seed, 7])
    for _ in range(count):
        yield " ".join(words[int(i)] for i in rng.integers(0, len(words), int(rng.integers(3, 11))))


def passages(texts: Sequence[str], seed: int = 0, every: int = PASSAGE_EVERY) -> Iterator[str]:
    """From every `every`-th text on, it and the texts after it joined until 60-180 words (drawn per passage).

    NOTE: consecutive training texts mostly come from one document (the splits are drawn per text),
    so these read as the corpus's own paragraphs; at most 3 x `every` texts are joined, so a run of
    very short texts never pulls in a whole section.
    """
    for first in range(0, len(texts), every):
        rng = np.random.default_rng([seed, zlib.crc32(f"passage:{texts[first]}".encode())])
        goal, joined, count = int(rng.integers(60, 181)), [], 0
        for i in range(first, min(first + 3 * every, len(texts))):
            joined.append(texts[i])
            count += len(texts[i].split())
            if count >= goal:
                break
        if len(joined) > 1:
            yield " ".join(" ".join(joined).split()[:180])


def vocabulary_words(spellings: Sequence[object | None]) -> list[str]:
    """The whole-word tokens of a vocabulary (a word's first piece, letters only), from `Speller.spellings()`."""
    return [s.text for s in spellings if s is not None and s.word_start and s.text.isalpha()]


def _make(kind: Augment, text: str, following: str, rng: np.random.Generator) -> str | None:
    words = text.split()
    if kind is Augment.SPANS:
        if len(words) < 4:
            return None
        size = int(rng.integers(2, min(8, len(words) - 1) + 1))
        start = int(rng.integers(0, len(words) - size + 1))
        return " ".join(words[start : start + size]).strip(" ,;:")
    if kind is Augment.QUESTIONS:
        if len(words) < 3:
            return None
        size = int(rng.integers(2, min(6, len(words)) + 1))
        start = int(rng.integers(0, len(words) - size + 1))
        span = _PUNCTUATION.sub(" ", " ".join(words[start : start + size])).split()
        return _QUESTIONS[int(rng.integers(len(_QUESTIONS)))].format(" ".join(span).lower()) if span else None
    if kind is Augment.WORDS:
        return " ".join(_PUNCTUATION.sub(" ", text).lower().split())
    if kind is Augment.SENTENCES:
        sentences = split_sentences(text)
        return sentences[int(rng.integers(len(sentences)))] if len(sentences) > 1 else None
    if kind is Augment.DROP:
        if len(words) < 5:
            return None
        keep = rng.random(len(words)) >= 0.2
        return " ".join(w for w, k in zip(words, keep, strict=True) if k)
    return f"{text} {following}"
