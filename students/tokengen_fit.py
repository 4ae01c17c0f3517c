"""How the token generator learns: its (spelling, teacher vector) pairs, their weights, and the regression.

The pairs are the teacher's vocabulary (each token's vector alone) plus real words the vocabulary does not hold
as one token: the corpus's commonest, gensim's word lists and a user's word file (`students.tokengen`).
"""

from __future__ import annotations

import logging
import math
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from distill.data.corpus import Split, gensim_test_data
from distill.errors import DistillError
from distill.teacher.tokens import Speller, Spelling

if TYPE_CHECKING:
    from distill.data.targets import Targets
    from distill.teacher.model import Teacher

logger = logging.getLogger(__name__)

_EDGES = re.compile(r"^[\W_]+|[\W_]+$")  # punctuation around a word ('café,'), which SentencePiece keeps in it


def token_weights(targets: Targets, ids: list[int], n_items: int) -> torch.Tensor:
    """(n_items,) loss weights: sqrt(1 + count in the training texts) for the tokens `ids`, then 1 for extra words."""
    counts = targets.token_id_counts(Split.TRAIN, minlength=max(ids) + 1)
    weights = np.ones(n_items, dtype=np.float32)
    weights[: len(ids)] = np.sqrt(1 + counts[ids])
    return torch.from_numpy(weights)


def fit_generator(
    generator: torch.nn.Module,  # a students.tokengen.TokenGenerator (not imported: tokengen imports this module)
    texts: list[Spelling],
    vectors: torch.Tensor,
    held_out: np.ndarray,
    is_vocab: np.ndarray,
    *,
    epochs: int | None = None,
    batch_size: int = 512,
    lr: float = 3e-3,
    weights: torch.Tensor | None = None,
) -> dict[str, float]:
    """Regress the generator on (spelling, teacher vector) pairs; return its cosine on what was held out.

    `weights` (n,) weigh each pair's loss: a token that sentences use often matters more.
    """
    weights = torch.ones(len(texts)) if weights is None else weights
    features = generator.featurize(texts)
    train = np.flatnonzero(~held_out)
    epochs = epochs or generator.config.generator_epochs
    steps = epochs * math.ceil(len(train) / batch_size)
    optimizer = torch.optim.AdamW(generator.parameters(), lr=lr, weight_decay=1e-4)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=lr, total_steps=steps, pct_start=0.05)
    rng = np.random.default_rng(0)
    with torch.no_grad():  # NOTE: the teacher's vectors share a large common part; start the output there
        generator.mlp[-1].bias.copy_(vectors[train].mean(dim=0))
    generator.train()
    # NOTE: disable=None shows the bar on a terminal only.
    with tqdm(total=steps, desc="fit token generator", unit="step", disable=None) as bar:
        for _ in range(epochs):
            for rows in np.array_split(rng.permutation(train), math.ceil(len(train) / batch_size)):
                loss = (1 - F.cosine_similarity(generator(features[rows]), vectors[rows], dim=-1)) @ weights[rows]
                loss = loss / weights[rows].sum()
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                scheduler.step()
                bar.update(1)
            bar.set_postfix(loss=f"{loss.item():.4f}")
    generator.eval()
    with torch.inference_mode():
        cosine = F.cosine_similarity(generator(features), vectors, dim=-1).numpy()
    metrics = {
        "generator_train_cosine": float(cosine[~held_out].mean()),
        "generator_heldout_vocab_cosine": float(cosine[held_out & is_vocab].mean()),
        "generator_heldout_word_cosine": float(cosine[held_out & ~is_vocab].mean()) if (held_out & ~is_vocab).any()
        else float("nan"),
    }  # fmt: skip
    logger.info("token generator: %s", ", ".join(f"{k} {v:.4f}" for k, v in metrics.items()))
    return metrics


def read_words(path: str) -> list[str]:
    """The words of a user's word file, one per line ('' gives none)."""
    if not path:
        return []
    file = Path(path)
    if not file.is_file():
        raise DistillError(f"word list {path!r} does not exist")
    words = [w.strip() for w in file.read_text(encoding="utf-8", errors="replace").splitlines() if w.strip()]
    if not words:
        raise DistillError(f"word list {path!r} is empty; give one word per line")
    return words


def training_words(teacher: Teacher, texts: Iterable[str], limit: int, extra: Sequence[str] = ()) -> list[str]:
    """Real words the vocabulary does not hold as one token: gensim's word lists and the corpus's commonest.

    Words are plain text, normalized as the teacher's tokenizer does (lower-cased for an uncased BERT).
    """
    speller = Speller(teacher.tokenizer.backend_tokenizer)
    counts: Counter[str] = Counter()
    for text in texts:
        counts.update(w for w in (_EDGES.sub("", w) for w in speller.words(text)) if w.isalpha())
    listed = sorted({speller.normalize_word(w) for w in [*gensim_words(), *extra] if w.isalpha()})
    listed = [w for w, one in zip(listed, speller.one_token(listed), strict=True) if not one]
    return sorted(set(listed) | set(not_one_token(speller, [w for w, _ in counts.most_common()], limit)))


def not_one_token(speller: Speller, words: list[str], limit: int, chunk: int = 4096) -> list[str]:
    """The first `limit` of `words` that the vocabulary does not hold as one token."""
    found: list[str] = []
    # NOTE: encoded in chunks, most common first: the limit is met long before a large corpus's rare words.
    for first in range(0, len(words), chunk):
        block = words[first : first + chunk]
        found.extend(w for w, one in zip(block, speller.one_token(block), strict=True) if not one)
        if len(found) >= limit:
            break
    return found[:limit]


def gensim_words() -> list[str]:
    """The words of gensim's SimLex-999, WordSim-353 and Google analogy files."""
    words: list[str] = []
    for name in ("simlex999.txt", "wordsim353.tsv", "questions-words.txt"):
        for line in (gensim_test_data() / name).read_text(encoding="utf-8", errors="replace").splitlines():
            if line and not line.startswith(("#", ":")):
                words.extend(line.split()[:4] if name == "questions-words.txt" else line.split("\t")[:2])
    return words
