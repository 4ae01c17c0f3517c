"""Text with unseen words: misspellings that are deterministic, touch only long words at the rate asked, and the
rare-word and misspelled sets `distill eval` measures."""

import random
import re

import pytest

from distill.data.unseen import MIN_LETTERS, misspell, misspelled_pairs, misspelled_texts, rare_words, typo

TEXT = (
    "The committee approved the new budget on Tuesday after a long debate about schools, hospitals and roads, "
    "while protesters gathered outside the parliament building holding banners and singing loudly."
)


def _words(text: str) -> list[str]:
    return re.findall(r"[^\W\d_]+", text)


def test_the_same_text_always_gets_the_same_typos_and_another_seed_others() -> None:
    assert misspell(TEXT) == misspell(TEXT) != TEXT
    assert misspell(TEXT, seed=1) != misspell(TEXT)
    assert misspell(TEXT, rate=0.0) == TEXT


def test_short_words_punctuation_and_digits_are_left_alone() -> None:
    text = "I saw a cat, 42 dog and an owl at 7 pm; it is so."
    assert misspell(text, rate=1.0) == text
    changed = misspell("Elephants, 1999: wonderful!", rate=1.0)
    assert changed.endswith("!") and ", 1999: " in changed
    assert all(a != b for a, b in zip(_words("Elephants wonderful"), _words(changed), strict=True))


def test_the_rate_is_the_fraction_of_long_words_changed() -> None:
    texts = [f"{TEXT} Number {i}." for i in range(300)]
    for rate in (0.1, 0.3, 0.6):
        pairs = [(a, b) for t in texts for a, b in zip(_words(t), _words(misspell(t, rate)), strict=False)]
        long_words = [(a, b) for a, b in pairs if len(a) >= MIN_LETTERS]
        changed = sum(a != b for a, b in long_words) / len(long_words)
        assert changed == pytest.approx(rate, abs=0.03)
        assert all(a == b for a, b in pairs if len(a) < MIN_LETTERS)


def test_a_typo_is_one_small_edit_that_keeps_the_first_letter() -> None:
    rng = random.Random(0)
    for word in ["budget", "Parliament", "committee", "aaaa", "naïve"] * 40:
        out = typo(word, rng)
        assert out != word and out[0] == word[0] and abs(len(out) - len(word)) <= 1


def test_misspelled_sets_drop_what_they_leave_alone_and_pairs_keep_their_order() -> None:
    assert misspelled_texts(["a cat sat", TEXT]) == [misspell(TEXT)]
    first, second = misspelled_pairs([TEXT, "on it"], ["so be it", TEXT])
    assert first == [misspell(TEXT), "on it"] and second == ["so be it", misspell(TEXT)]
    with pytest.raises(ValueError, match="rate"):
        misspell(TEXT, rate=1.5)


def test_rare_words_are_those_the_vocabulary_splits_into_pieces() -> None:
    assert rare_words("The cat sat on the mat in the house.") == []
    assert rare_words("A microclimate near the Teufelsberg.") == ["microclimate", "Teufelsberg"]
