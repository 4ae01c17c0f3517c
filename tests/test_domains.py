"""The held-out sets of other forms: present, cleaned, and never the default corpus."""

from distill.data.corpus import default_corpus
from distill.data.domains import forum_sentences, forum_titles, other_domain_texts


def test_other_domain_sets_are_varied_clean_and_unlike_the_training_corpus() -> None:
    sets = other_domain_texts()
    assert set(sets) == {"reviews", "forum titles", "forum sentences", "chat"}
    assert {name: len(texts) >= 100 for name, texts in sets.items()} == dict.fromkeys(sets, True)
    training = set(default_corpus())
    for texts in sets.values():
        assert len(set(texts)) == len(texts) and not training.intersection(texts)
    assert not any(t.lower().startswith("re:") for t in forum_titles())
    assert not any("@" in s or s.startswith(">") or "Subject:" in s for s in forum_sentences())
    assert sum(t.endswith("?") for t in sets["chat"]) >= 200  # everyday questions among the chat turns
