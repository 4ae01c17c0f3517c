"""Retrieval over passages from a plain file of passages, with no judgements needed: the inverse cloze task.

From a `.txt` file of passages (one a line), `cloze_retrieval` keeps the first `documents`, draws
`queries` of those with three sentences or more, and takes one sentence out of each as its query;
the passage, without that sentence, is the one relevant document among all the others (Lee et al.,
2019, "Latent Retrieval for Weakly Supervised Open Domain Question Answering"). So the query shares
the passage's topic and words, not its text, and a model must place a sentence near the passage it
came from among thousands of passages of 100-300 tokens, which is what a retrieval corpus asks of it.

    distill eval --run runs/default --tasks passages:../shared/data/passages.txt
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from distill.data.corpus import iter_text_lines, split_sentences
from distill.errors import DistillError
from eval.retrieval import RetrievalData

DOCUMENTS, QUERIES = 5000, 500


def cloze_retrieval(
    path: str | Path, documents: int = DOCUMENTS, queries: int = QUERIES, seed: int = 0
) -> RetrievalData:
    """The inverse cloze task on the first `documents` distinct passages of `path` (see the module docstring)."""
    passages: dict[str, None] = {}
    for line in iter_text_lines(Path(path)):
        if text := " ".join(line.split()):
            passages.setdefault(text)
        if len(passages) >= documents:
            break
    try:
        return cloze_from_passages(list(passages), queries=queries, seed=seed)
    except DistillError as e:
        raise DistillError(f"{path}: {e}") from e


def cloze_from_passages(
    texts: Sequence[str], askable: Sequence[int] | None = None, queries: int = QUERIES, seed: int = 0
) -> RetrievalData:
    """The inverse cloze task on `texts`: up to `queries` of the passages at `askable` (default: any) with three
    sentences or more each lose one sentence, which is asked for its passage among all of `texts`."""
    split = [split_sentences(text, min_words=4) for text in texts]
    candidates = range(len(texts)) if askable is None else askable
    eligible = [i for i in candidates if len(split[i]) >= 3]
    if not eligible:
        raise DistillError("no passage of three sentences or more to draw a query from")
    rng = np.random.default_rng(seed)
    chosen = rng.choice(eligible, size=min(queries, len(eligible)), replace=False)
    docs = {f"p{i}": text for i, text in enumerate(texts)}
    asked, qrels = {}, {}
    for i in sorted(int(c) for c in chosen):
        sentences = split[i]
        k = int(rng.integers(len(sentences)))
        asked[f"q{i}"] = sentences[k]
        docs[f"p{i}"] = " ".join(sentences[:k] + sentences[k + 1 :])
        qrels[f"q{i}"] = {f"p{i}": 1}
    return RetrievalData(docs, asked, qrels)
