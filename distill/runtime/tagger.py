"""`OnnxTagger`: a tag for each word from an exported tagger (`distill head export` of a tokens head), no torch.

The folder is an export whose graphs give, beside `sentence_vectors`, `token_probabilities` (batch, seq, tags):
the tagger's probabilities at every token. As the tagger was trained, a word is read at its first sub-token
(`first_subtokens`, which training uses too), and `head.json` names the tags in the order of their columns:

    from distill.runtime import OnnxTagger

    tagger = OnnxTagger("exports/ner")
    tagger.predict(["Alice Smith flew to Paris"])  # [[("Alice", "B-PER"), ("Smith", "I-PER"), ..., ("Paris", "B-LOC")]]
    tagger.predict([["Alice", "Smith", "flew"]])   # words already split, as the training data was

A text given as a string is split into words at spaces and around punctuation (`split_words`), as CoNLL-style
data splits them; give lists of words to split them your own way. A word the model reads no token of (past the
max length) gets the fallback tag: "O" when the tagger has it, else its most frequent tag.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from tokenizers import Encoding, Tokenizer

from distill.errors import DistillError
from distill.runtime.embedder import INPUT_NAMES, OnnxEmbedder, pad

TAGGER_HEAD_FILE = "head.json"  # NOTE: the same name as a classifier's; its config's task says "tokens"
TOKEN_PROBABILITIES = "token_probabilities"  # the tagger's output, (batch, seq, tags)
OUTSIDE = "O"
_WORDS = re.compile(r"\w+|[^\w\s]")  # runs of letters and digits, and each punctuation mark alone
Text = str | Sequence[str]  # a text, or its words


def split_words(text: Text) -> list[str]:
    """A text's words: `text` itself when it is a list of words, else its runs of word characters and its marks."""
    return _WORDS.findall(text) if isinstance(text, str) else [str(w) for w in text]


def fallback_of(labels: Sequence[str], counts: Mapping[str, int]) -> str:
    """The tag of a word the model gives no vector: "O" when the tagger has it, else its most frequent tag."""
    return OUTSIDE if OUTSIDE in labels else max(labels, key=lambda tag: counts.get(tag, 0))


def first_subtokens(
    tokenizer: Tokenizer, sentences: Sequence[Sequence[str]], prompt: str = "", special_tokens: bool = True
) -> tuple[list[list[int]], list[np.ndarray]]:
    """Each sentence's token ids as the model reads it, and each word's first sub-token position (-1: none).

    The model reads the prompt, then the words joined by single spaces, as it reads any text; the tokens'
    character offsets map them back to words, and special tokens ([CLS], <s>, ...) have none.

    NOTE: the words are joined rather than given to the tokenizer pre-split (`is_pretokenized`): a byte-level
    BPE tokenizer (RoBERTa's) reads each pre-split word as the start of a text, without the space mark every
    later word carries in running text, so the model would see ids it never saw in its training.
    """
    texts, starts = [], []
    for words in sentences:
        starts.append(len(prompt) + np.cumsum([0, *(len(w) + 1 for w in words)])[:-1])  # where each word begins
        texts.append(prompt + " ".join(words))
    encodings = tokenizer.encode_batch(texts, add_special_tokens=special_tokens)
    firsts = [_first_positions(e, s, [len(w) for w in words])
              for e, s, words in zip(encodings, starts, sentences, strict=True)]  # fmt: skip
    return [e.ids for e in encodings], firsts


def _first_positions(encoding: Encoding, starts: np.ndarray, lengths: list[int]) -> np.ndarray:
    first = np.full(len(starts), -1, dtype=np.int64)
    for position, (begin, end) in enumerate(encoding.offsets):
        if end <= begin:  # a special token
            continue
        last = end - 1  # NOTE: its last character: a byte-level or metaspace token carries the space before its word
        word = int(np.searchsorted(starts, last, side="right")) - 1
        if word >= 0 and last >= starts[word] + lengths[word]:  # a space between words: the next word's mark
            word += 1
        if 0 <= word < len(starts) and lengths[word] and first[word] < 0:
            first[word] = position
    return first


class OnnxTagger(OnnxEmbedder):
    """Word tags (and sentence vectors) from an exported tagger, on onnxruntime's CPU provider."""

    def __init__(self, path: str | Path, *, precision: str = "fp32", threads: int | None = None) -> None:
        """As `OnnxEmbedder`; the folder must hold a tagger (`head.json` of a tokens head, `token_probabilities`)."""
        path = Path(path)
        try:
            head = json.loads((path / TAGGER_HEAD_FILE).read_text(encoding="utf-8"))["config"]
            self.labels: list[str] = [str(x) for x in head["labels"]]  # the probabilities' columns
            task, counts = head.get("task", "classify"), head.get("metrics", {}).get("class_counts") or {}
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise DistillError(f"{str(path)!r} holds no tagger (no valid {TAGGER_HEAD_FILE}): export one with "
                               "`distill head export` of a tokens head") from e  # fmt: skip
        if task != "tokens":
            raise DistillError(f"{str(path)!r} holds a {task} head, not a tagger; load it with OnnxClassifier")
        super().__init__(path, precision=precision, threads=threads)
        self.fallback = fallback_of(self.labels, counts)
        shapes = {o.name: o.shape for o in self.session.get_outputs()}
        if self.config.inputs != "padded" or len(shapes.get(TOKEN_PROBABILITIES) or ()) != 3 \
                or shapes[TOKEN_PROBABILITIES][2] != len(self.labels):  # fmt: skip
            raise DistillError(f"{str(path)!r} has no {TOKEN_PROBABILITIES!r} output of {len(self.labels)} tags; "
                               "export it again with `distill head export`")  # fmt: skip

    def predict_proba(self, texts: Sequence[Text], batch_size: int = 32) -> list[np.ndarray]:
        """Each text's (n_words, tags) float32 probabilities, read at each word's first sub-token; a row of NaN for
        a word the model reads no token of."""
        if isinstance(texts, str):
            raise TypeError("predict_proba takes a list of texts; wrap a single text in a list")
        sentences = [split_words(t) for t in texts]
        ids, firsts = first_subtokens(self.tokenizer, sentences, self.config.prompt, self.config.add_special_tokens)
        out: list[np.ndarray] = [np.empty((0, len(self.labels)), dtype=np.float32)] * len(ids)
        order = np.argsort([-len(x) for x in ids], kind="stable")  # similar lengths together: little padding
        for start in range(0, len(order), batch_size):
            index = order[start : start + batch_size]
            feeds = dict(zip(INPUT_NAMES, pad([ids[i] for i in index]), strict=True))
            (probabilities,) = self.session.run([TOKEN_PROBABILITIES], feeds)  # (batch, seq, tags)
            for row, i in enumerate(index):
                found = firsts[i] >= 0
                words = np.full((len(found), len(self.labels)), np.nan, dtype=np.float32)  # (n_words, tags)
                words[found] = probabilities[row, firsts[i][found]]
                out[i] = words
        return out

    def predict(self, texts: Sequence[Text], batch_size: int = 32) -> list[list[tuple[str, str]]]:
        """Each text's words, each with its most probable tag (the fallback tag where the model reads none)."""
        return [[(word, tag) for word, tag, _ in words] for words in self.predict_scored(texts, batch_size)]

    def predict_scored(self, texts: Sequence[Text], batch_size: int = 32) -> list[list[tuple[str, str, float]]]:
        """As `predict`, with each tag's probability (NaN for a word given the fallback tag)."""
        out = []
        for text, probabilities in zip(texts, self.predict_proba(texts, batch_size), strict=True):
            words = split_words(text)
            best = np.nan_to_num(probabilities, nan=-1.0).argmax(axis=1) if len(words) else np.zeros(0, dtype=int)
            out.append([(word, self.labels[int(b)], float(p[b])) if not np.isnan(p).any()
                        else (word, self.fallback, float("nan"))
                        for word, b, p in zip(words, best, probabilities, strict=True)])  # fmt: skip
        return out
