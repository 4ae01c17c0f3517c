"""Word and sentence tasks with known gold answers, each an evaluator `__call__(encode) -> dict`.

The data ships with gensim (`gensim/test/test_data`): SimLex-999 and WordSim-353 word pairs,
the Google analogy questions, and 200 labelled movie-review sentences for a polarity probe;
any STS file (two sentences and a gold score a line) adds a sentence similarity task. Every
model is treated alike: a word is embedded as a one-word text through the model's `encode`.
Scores are x 100 (Spearman correlation, or accuracy in percent).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from scipy.stats import spearmanr
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold, cross_val_score

from distill.data.corpus import gensim_test_data
from distill.errors import DistillError
from eval.fidelity import unit

Encode = Callable[[Sequence[str]], np.ndarray]  # texts -> (n, dim) unit vectors


def read_sts(path: str | Path) -> tuple[list[str], list[str], np.ndarray]:
    """Sentence pairs and gold scores from a tab-separated file.

    A line is either `sentence<TAB>sentence<TAB>score` or the STS Benchmark layout
    (genre, file, year, id, score, sentence, sentence).
    """
    path = Path(path)
    if not path.is_file():
        raise DistillError(f"STS file {str(path)!r} does not exist")
    first, second, gold = [], [], []
    for number, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
        if not line.strip():
            continue
        cells = line.split("\t")
        a, b, score = (cells[5], cells[6], cells[4]) if len(cells) >= 7 else [*cells, "", ""][:3]
        try:
            gold.append(float(score))
        except ValueError as e:
            raise DistillError(
                f"{path.name} line {number}: expected 'sentence<TAB>sentence<TAB>score', got {line[:80]!r}"
            ) from e
        first.append(a)
        second.append(b)
    if len(gold) < 2:
        raise DistillError(f"STS file {str(path)!r} has fewer than two scored pairs")
    return first, second, np.array(gold)


def sts_spearman(encode: Encode, first: Sequence[str], second: Sequence[str], gold: np.ndarray) -> float:
    """Spearman correlation x 100 between gold scores and the cosine of each pair's vectors."""
    a, b = unit(encode(first)), unit(encode(second))
    return float(100 * spearmanr((a * b).sum(axis=1), gold).statistic)


class STSEvaluator:
    """Spearman x 100 of cosine against gold similarity on an STS file."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.first, self.second, self.gold = read_sts(path)

    def __call__(self, encode: Encode) -> dict[str, Any]:
        return {"sts": sts_spearman(encode, self.first, self.second, self.gold)}


class WordSimilarityEvaluator:
    """Spearman x 100 of cosine against human similarity judgements of word pairs (SimLex-999, WordSim-353)."""

    FILES: ClassVar[dict[str, str]] = {"simlex999": "simlex999.txt", "wordsim353": "wordsim353.tsv"}

    def __init__(self, data: Path | None = None) -> None:
        data = data or gensim_test_data()
        self.pairs = {name: read_word_pairs(data / file) for name, file in self.FILES.items()}

    def __call__(self, encode: Encode) -> dict[str, Any]:
        words = sorted({w for first, second, _ in self.pairs.values() for w in [*first, *second]})
        vectors = dict(zip(words, unit(encode(words)), strict=True))
        out = {}
        for name, (first, second, gold) in self.pairs.items():
            cosines = [float(vectors[a] @ vectors[b]) for a, b in zip(first, second, strict=True)]
            out[name] = float(100 * spearmanr(cosines, gold).statistic)
        return out


def read_word_pairs(path: Path) -> tuple[list[str], list[str], np.ndarray]:
    """(first words, second words, gold scores) from a tab-separated file with '#' comment lines."""
    rows = [line.split("\t") for line in path.read_text(encoding="utf-8").splitlines()]
    rows = [r for r in rows if len(r) >= 3 and not r[0].startswith("#")]
    return [r[0].lower() for r in rows], [r[1].lower() for r in rows], np.array([float(r[2]) for r in rows])


@dataclass
class Analogy:
    a: str
    b: str
    c: str
    expected: str  # a is to b as c is to expected: b - a + c = expected


class AnalogyEvaluator:
    """Accuracy of b - a + c = d on the Google analogy set, answers sought among the set's own words.

    NOTE: the candidates are the ~900 words of the analogy file (a, b and c excluded), not a
    whole vocabulary: every model, static or contextual, is asked the same closed question.
    """

    EXAMPLE = Analogy("man", "king", "woman", "queen")  # king - man + woman

    def __init__(self, data: Path | None = None) -> None:
        self.questions = read_analogies((data or gensim_test_data()) / "questions-words.txt")
        self.words = sorted({w for q in self.questions for w in (q.a, q.b, q.c, q.expected)})

    def __call__(self, encode: Encode) -> dict[str, Any]:
        vectors = unit(encode(self.words))  # (words, dim)
        index = {w: i for i, w in enumerate(self.words)}
        a, b, c = (np.array([index[getattr(q, f)] for q in self.questions]) for f in "abc")
        expected = np.array([index[q.expected] for q in self.questions])
        correct = 0
        for start in range(0, len(self.questions), 2048):
            part = slice(start, start + 2048)
            scores = (vectors[b[part]] - vectors[a[part]] + vectors[c[part]]) @ vectors.T  # (questions, words)
            rows = np.arange(scores.shape[0])
            for exclude in (a[part], b[part], c[part]):
                scores[rows, exclude] = -np.inf
            correct += int((scores.argmax(axis=1) == expected[part]).sum())
        return {"analogy": 100 * correct / len(self.questions), "analogy_example": self.answer(vectors, index)}

    def answer(self, vectors: np.ndarray, index: dict[str, int]) -> str:
        """The model's answer to king - man + woman."""
        q = self.EXAMPLE
        scores = (vectors[index[q.b]] - vectors[index[q.a]] + vectors[index[q.c]]) @ vectors.T
        scores[[index[q.a], index[q.b], index[q.c]]] = -np.inf
        return self.words[int(scores.argmax())]


def read_analogies(path: Path) -> list[Analogy]:
    lines = path.read_text(encoding="utf-8").splitlines()
    return [Analogy(*line.lower().split()) for line in lines if line and not line.startswith(":")]


class PolarityProbe:
    """Accuracy (%) of a logistic regression on frozen sentence vectors: positive or negative review.

    Five stratified folds with a fixed seed over gensim's 200 labelled sentences, so repeated
    runs give the same figure. NOTE: the file is Windows-1252 text (its dashes are byte 0x97).
    """

    def __init__(self, data: Path | None = None) -> None:
        text = ((data or gensim_test_data()) / "pang_lee_polarity.cor").read_text(encoding="cp1252", errors="replace")
        rows = [line.split(" ", 1) for line in text.splitlines() if line.startswith("__label__")]
        self.texts = [text.strip() for _, text in rows]
        self.labels = np.array([label == "__label__pos" for label, _ in rows], dtype=int)

    def __call__(self, encode: Encode) -> dict[str, Any]:
        folds = StratifiedKFold(n_splits=5, shuffle=True, random_state=0)
        scores = cross_val_score(LogisticRegression(C=10.0, max_iter=2000), unit(encode(self.texts)), self.labels,
                                 cv=folds)  # fmt: skip
        return {"polarity_probe": float(100 * scores.mean())}
