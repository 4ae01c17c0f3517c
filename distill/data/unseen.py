"""Text with words a vocabulary never saw: deterministic misspellings, and sentences that hold rare words.

A static table has a row for each token it learnt; a word it never saw reaches it as pieces. These sets
measure how far a student follows the teacher there (the teacher reads the same text):

    misspell(text, rate)   each word of 4+ letters, with probability `rate`, gets one typo: two neighbouring
                           letters swapped, a letter dropped or doubled, or a letter replaced by a neighbouring
                           key; seeded by the text, so the same text always gets the same typos
    with_rare_words(texts) those of `texts` with words the default teacher's WordPiece vocabulary splits into
                           several pieces (`distill.data.domains.rare_word_texts` picks them from held-out text)
"""

from __future__ import annotations

import random
import re
import zlib
from collections.abc import Sequence
from functools import cache

from tokenizers import Tokenizer

MISSPELL_RATE = 0.3  # fraction of the words of 4+ letters that get a typo in the held-out misspelled set
MIN_LETTERS = 4  # shorter words are left as they are: a typo there often makes another real word
RARE_MIN_PIECES = 3  # a rare word: one the vocabulary splits into at least this many pieces
RARE_TEXTS = 300  # at most this many sentences in the rare-word set

_WORD = re.compile(r"[^\W\d_]+")  # a run of letters (any script); digits and punctuation are left alone
_ROWS = ("qwertyuiop", "asdfghjkl", "zxcvbnm")


def _neighbours() -> dict[str, str]:
    """Each letter's neighbouring keys on a QWERTY keyboard (same row and the rows above and below)."""
    where = {c: (r, i) for r, row in enumerate(_ROWS) for i, c in enumerate(row)}
    out = {}
    for c, (r, i) in where.items():
        near = [_ROWS[rr][j] for rr in (r - 1, r, r + 1) if 0 <= rr < 3 for j in (i - 1, i, i + 1)
                if 0 <= j < len(_ROWS[rr])]  # fmt: skip
        out[c] = "".join(k for k in near if k != c)
    return out


NEIGHBOURS = _neighbours()


def typo(word: str, rng: random.Random) -> str:
    """`word` with one typo: a swap of two neighbouring letters, a dropped or doubled letter, or a neighbouring key.

    NOTE: the first letter is kept (people rarely mistype it, and a reader still knows the word). The result always
    differs from `word`: a swap of two equal letters, or a key with no known neighbours, doubles the letter instead.
    """
    kind = rng.randrange(4)
    i = rng.randrange(1, len(word) - 1) if kind == 0 else rng.randrange(1, len(word))
    doubled = word[:i] + word[i] + word[i:]
    if kind == 0:
        out = word[:i] + word[i + 1] + word[i] + word[i + 2 :]
    elif kind == 1:
        out = word[:i] + word[i + 1 :]
    elif kind == 2:
        out = doubled
    else:
        keys = NEIGHBOURS.get(word[i].lower(), "")
        key = rng.choice(keys) if keys else word[i]
        out = word[:i] + (key.upper() if word[i].isupper() else key) + word[i + 1 :]
    return out if out != word else doubled


def misspell(text: str, rate: float = MISSPELL_RATE, seed: int = 0) -> str:
    """`text` with a typo in each word of 4+ letters with probability `rate`; the same text and seed, the same typos."""
    if not 0 <= rate <= 1:
        raise ValueError(f"the misspelling rate must be in [0, 1], not {rate}")
    rng = random.Random(zlib.crc32(text.encode()) ^ seed)  # NOTE: crc32: str hashes are salted per process
    return _WORD.sub(lambda m: _maybe_typo(m.group(), rate, rng), text)


def _maybe_typo(word: str, rate: float, rng: random.Random) -> str:
    if len(word) < MIN_LETTERS:
        return word
    return typo(word, rng) if rng.random() < rate else word


def misspelled_texts(texts: Sequence[str], rate: float = MISSPELL_RATE, seed: int = 0) -> list[str]:
    """The texts of `texts` that `misspell` changes, misspelled (a text it leaves alone is not misspelled text)."""
    out = [misspell(t, rate, seed) for t in texts]
    return [m for m, t in zip(out, texts, strict=True) if m != t]


def misspelled_pairs(
    first: Sequence[str], second: Sequence[str], rate: float = MISSPELL_RATE
) -> tuple[list[str], list[str]]:
    """Both sentences of each STS pair misspelled (their gold scores still hold: a reader sees through typos)."""
    return [misspell(t, rate) for t in first], [misspell(t, rate) for t in second]


@cache
def _default_tokenizer() -> Tokenizer:
    from distill.teacher.model import DEFAULT_TEACHER, resolve_teacher

    tokenizer = Tokenizer.from_file(str(resolve_teacher(DEFAULT_TEACHER) / "tokenizer.json"))
    tokenizer.no_padding()  # NOTE: the packaged file pads to a fixed length; a word's pieces are its ids alone
    return tokenizer


def rare_words(text: str, min_pieces: int = RARE_MIN_PIECES) -> list[str]:
    """The words of `text` (letters only) that the default teacher's vocabulary splits into `min_pieces` or more.

    NOTE: the default teacher's tokenizer, whichever teacher a run has: the set stays the same text for every run,
    so runs of different teachers are measured on the same sentences."""
    words = [w for w in _WORD.findall(text) if len(w) >= MIN_LETTERS]
    if not words:
        return []
    encodings = _default_tokenizer().encode_batch(words, add_special_tokens=False)
    return [w for w, e in zip(words, encodings, strict=True) if len(e.ids) >= min_pieces]


def with_rare_words(texts: Sequence[str], limit: int = RARE_TEXTS) -> list[str]:
    """The first `limit` distinct texts of `texts` (5 to 40 words) with at least one rare word (`rare_words`)."""
    out = [t for t in dict.fromkeys(texts) if 5 <= len(t.split()) <= 40 and rare_words(t)]
    return out[:limit]
