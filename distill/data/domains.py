"""Held-out text of other forms than the default corpus: what a student meets in traffic, never trained on.

The default corpus is Wikipedia and news prose. These sets are other forms, from data the
installed packages ship: gensim's movie-review snippets and Usenet posts (subject lines as
titles, body sentences as forum text) and chatterbot-corpus's English conversations (everyday
questions and chat turns). Two more hold words a vocabulary never saw (`distill.data.unseen`): some of each set
misspelled, and held-out sentences with rare words. `make distill` and `make eval` report fidelity on each and
their mean.
"""

from __future__ import annotations

import io
import logging
import pickle
import re
import zlib
from collections.abc import Callable
from pathlib import Path

from distill.data.corpus import gensim_test_data, review_texts, split_sentences
from distill.data.unseen import misspelled_texts, with_rare_words

logger = logging.getLogger(__name__)

FORUM_SENTENCES = 600  # the first this many usable body sentences of the Usenet sample
MISSPELLED_EACH = 75  # the first this many texts of each set above, misspelled, make the misspelled set
_QUOTE = re.compile(r"^\s*(>|\||In article|.*\bwrites:$|.*\bwrote:$)")
_NOISE = re.compile(r"[@<>\\/_=*#]|\d{3,}|--")


def other_domain_texts() -> dict[str, list[str]]:
    """Each available set by name: reviews, forum titles, forum sentences, chat, then misspelled (some of each of
    those with typos) and rare words (deduplicated, in a fixed order)."""
    sets: dict[str, Callable[[], list[str]]] = {
        "reviews": review_texts, "forum titles": forum_titles, "forum sentences": forum_sentences, "chat": chat_turns,
    }  # fmt: skip
    out = _read_sets(sets)
    # NOTE: misspelled after the sets it is made of, so it is made of whichever of them could be read
    misspelled = lambda: misspelled_texts([t for texts in out.values() for t in texts[:MISSPELLED_EACH]])  # noqa: E731
    return {**out, **_read_sets({"misspelled": misspelled, "rare words": rare_word_texts})}


def _read_sets(sets: dict[str, Callable[[], list[str]]]) -> dict[str, list[str]]:
    out = {}
    for name, read in sets.items():
        try:
            texts = _unique(read())
        except (ImportError, OSError) as e:
            logger.info("other-domain set %r skipped: %s", name, e)
            continue
        if texts:
            out[name] = texts
    return out


def _unique(texts: list[str]) -> list[str]:
    return list(dict.fromkeys(" ".join(t.split()) for t in texts if t.strip()))


def newsgroup_posts() -> list[str]:
    """The 200 Usenet posts (alt.atheism, sci.space) of gensim's `mini_newsgroup` sample, headers included."""

    class _Posts(pickle.Unpickler):
        # NOTE: the file is a pickled scikit-learn Bunch; it is read as a plain dict, and nothing
        # but numpy's array rebuilders and builtins may be named in it.
        def find_class(self, module: str, name: str) -> object:
            if module.startswith("sklearn"):
                return dict
            if module.split(".")[0] in ("numpy", "builtins", "__builtin__", "copyreg", "copy_reg", "_codecs"):
                return super().find_class(module, name)
            raise pickle.UnpicklingError(f"unexpected {module}.{name} in gensim's mini_newsgroup")

    data = zlib.decompress(Path(gensim_test_data() / "mini_newsgroup").read_bytes())
    return list(_Posts(io.BytesIO(data), encoding="latin-1").load()["data"])


def forum_titles() -> list[str]:
    """Subject lines of the Usenet posts, without 'Re:': short titles."""
    titles = []
    for post in newsgroup_posts():
        found = re.search(r"^Subject:\s*(.*)$", post, re.MULTILINE)
        if found:
            title = re.sub(r"^(re:\s*)+", "", found.group(1).strip(), flags=re.IGNORECASE)
            if len(title.split()) >= 2:
                titles.append(title)
    return titles


def forum_sentences(limit: int = FORUM_SENTENCES) -> list[str]:
    """Sentences the posters wrote themselves (no headers, quotes, addresses or signatures), 5 to 40 words."""
    out: list[str] = []
    for post in newsgroup_posts():
        body = post.split("\n\n", 1)[1] if "\n\n" in post else ""
        lines = [line for line in body.splitlines() if not _QUOTE.match(line)]
        for paragraph in "\n".join(lines).split("\n\n"):
            for sentence in split_sentences(" ".join(paragraph.split()), min_words=5):
                if len(sentence.split()) <= 40 and not _NOISE.search(sentence):
                    out.append(sentence)
    return _unique(out)[:limit]


CODE_CATEGORIES = ("coding",)  # chatterbot-corpus's categories of code snippets, not language


def chat_turns() -> list[str]:
    """Turns of chatterbot-corpus's English conversations (code snippets left out): questions and everyday chat."""
    turns: list[str] = []
    for category, conversations in chat_conversations().items():
        if category in CODE_CATEGORIES:
            continue
        for conversation in conversations:
            turns.extend(t for t in conversation if 2 <= len(t.split()) <= 40)
    return turns


def chat_conversations() -> dict[str, list[list[str]]]:
    """chatterbot-corpus's English conversations by category (its file names: ai, food, trivia, ...), each a list of
    turns, in file order (non-text turns left out)."""
    import chatterbot_corpus
    import yaml

    root = Path(chatterbot_corpus.__file__).parent / "data" / "english"
    out: dict[str, list[list[str]]] = {}
    for path in sorted(root.glob("*.yml")):
        conversations = (yaml.safe_load(path.read_text(encoding="utf-8")) or {}).get("conversations", [])
        out[path.stem] = [[t for t in c if isinstance(t, str)] for c in conversations if isinstance(c, list)]
    return out


def rare_word_texts() -> list[str]:
    """Held-out sentences with rare words (`distill.data.unseen.rare_words`): Usenet sentences past those `forum
    sentences` takes, then sentences of the IMDB reviews and the Wikipedia paragraphs gensim ships."""
    candidates = forum_sentences(limit=10 * FORUM_SENTENCES)[FORUM_SENTENCES:]  # NOTE: never those of that set
    return with_rare_words(candidates + imdb_sentences() + wikipedia_paragraph_sentences())


def imdb_sentences() -> list[str]:
    """Sentences of the 10 IMDB reviews gensim ships (lower-cased, as the file is)."""
    out = []
    for line in (gensim_test_data() / "alldata-id-10.txt").read_text(encoding="utf-8").splitlines():
        body = " ".join(line.split()[1:]).replace(" ,", ",").replace(" .", ".")
        out.extend(split_sentences(body, min_words=5))
    return out


def wikipedia_paragraph_sentences() -> list[str]:
    """Sentences of the two Wikipedia paragraph files gensim ships (New York, Berlin and the like)."""
    out = []
    for name in ("para2para_text1.txt", "para2para_text2.txt"):
        text = (gensim_test_data() / name).read_text(encoding="utf-8")
        out.extend(split_sentences(" ".join(text.split()), min_words=5))
    return out
