"""The held-out sets of other forms: present, cleaned, and never the default corpus."""

from distill.data.corpus import default_corpus
from distill.data.domains import MISSPELLED_EACH, forum_sentences, forum_titles, other_domain_texts
from distill.data.unseen import misspell, rare_words


def test_other_domain_sets_are_varied_clean_and_unlike_the_training_corpus() -> None:
    sets = other_domain_texts()
    assert set(sets) == {"reviews", "forum titles", "forum sentences", "chat", "misspelled", "rare words"}
    assert {name: len(texts) >= 100 for name, texts in sets.items()} == dict.fromkeys(sets, True)
    training = set(default_corpus())
    for texts in sets.values():
        assert len(set(texts)) == len(texts) and not training.intersection(texts)
    assert not any(t.lower().startswith("re:") for t in forum_titles())
    assert not any("@" in s or s.startswith(">") or "Subject:" in s for s in forum_sentences())
    assert sum(t.endswith("?") for t in sets["chat"]) >= 200  # everyday questions among the chat turns


def test_the_unseen_word_sets_are_held_out_text_with_typos_or_rare_words() -> None:
    sets = other_domain_texts()
    plain = [t for name in ("reviews", "forum titles", "forum sentences", "chat") for t in sets[name][:MISSPELLED_EACH]]
    assert set(sets["misspelled"]) <= {misspell(t) for t in plain} and not set(sets["misspelled"]) & set(plain)
    assert all(rare_words(t) for t in sets["rare words"])
    assert not set(sets["rare words"]) & {t for name, texts in sets.items() if name != "rare words" for t in texts}
