"""A tagger trained together with its transformer (`distill head train --task tokens --tune`).

As `distill.heads.tuning` does for a classifier: the frozen tagger is first fitted on the training
sentences' word vectors (so epoch 0 is the frozen baseline), then the model's chosen parameters
(`last`, `query` or `all`) and the head train together on cross-entropy over the words, each word read at
its first sub-token's vector in context as the frozen tagger reads it, and the epoch of best entity F1
on the held-out sentences is kept:

    student = as_student(load_model("runs/default/students/transformer"), "...")
    head = tune_tagger(student, sentences, tags, TuneConfig(tune="last"))  # trains `student` in place
    save_tuned(head, student, "heads/chunks")  # head.json, head.safetensors, model/

Only a transformer (a transformer student, or the teacher copied into one) has token vectors in context.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from distill.errors import DistillError
from distill.heads.head import ClassifierHead, HeadTrainConfig, class_weights
from distill.heads.tagging import entity_f1, sentence_split, student_token_encoder, train_tagger
from distill.heads.tune_config import TuneConfig
from distill.heads.tuning import freeze_all_but, sparse_tables, torch_threads, train_epochs, trainable, tune_settings
from distill.runtime.tagger import fallback_of, first_subtokens
from students.base import Student, pad
from students.transformer import TransformerStudent

logger = logging.getLogger(__name__)

VALID_BATCH = 64  # held-out sentences a forward pass


def tune_tagger(
    student: Student, sentences: Sequence[Sequence[str]], tags: Sequence[Sequence[str]],
    config: TuneConfig | None = None, *, model: str = "", encoder: str = "",
) -> ClassifierHead:  # fmt: skip
    """Train `student` (in place) and a tokens head together on tagged sentences; the head, with its metrics.

    Only the parameters `config.tune` names change. The student is left at the epoch of best held-out
    entity F1 (epoch 0: the frozen model and its tagger).
    """
    config = config or TuneConfig()
    if not isinstance(student, TransformerStudent):
        raise DistillError(f"the tokens task needs token vectors in context; a {student.kind} student gives one "
                           "vector a token whatever its context: tune a transformer student or teacher")  # fmt: skip
    if config.contrastive_epochs:
        raise DistillError("the contrastive start pairs labelled texts; a tagger has none: leave out "
                           "--contrastive-epochs for --task tokens")  # fmt: skip
    with torch_threads(config.threads):
        return _tune(student, sentences, tags, config, model, encoder)


def _tune(student: TransformerStudent, sentences: Sequence[Sequence[str]], tags: Sequence[Sequence[str]],
          config: TuneConfig, model: str, encoder: str) -> ClassifierHead:  # fmt: skip
    started = time.perf_counter()
    names, tag_ids = _tag_ids(sentences, tags)
    params = trainable(student, config.tune)
    head_config = config.head or HeadTrainConfig(seed=config.seed)
    train, valid = sentence_split(len(sentences), head_config.valid_fraction, config.seed)
    if not len(valid):
        raise DistillError("tuning a tagger needs held-out sentences: give it at least 2 tagged sentences")
    ids, firsts = first_subtokens(student.tokenizer, sentences, student.config.prompt, student.special_tokens)
    freeze_all_but(student, params)
    head = train_tagger(student_token_encoder(student)([sentences[i] for i in train]), [tags[i] for i in train],
                        head_config, model=model, encoder=encoder)  # fmt: skip
    counts = {n: int(c) for n, c in zip(names, np.bincount(np.concatenate(tag_ids), minlength=len(names)), strict=True)}
    balanced = bool(head_config.balanced)  # NOTE: None (the default) means unweighted for a tagger, as frozen
    weights = class_weights(np.concatenate([tag_ids[i] for i in train]), len(names)) if balanced else None
    loss_fn = nn.CrossEntropyLoss(weight=None if weights is None else torch.tensor(weights, dtype=torch.float32))
    words = _WordBatches(student, head, ids, firsts, tag_ids)

    def loss_of(batch: np.ndarray) -> torch.Tensor:
        logits, truth = words(batch)
        return loss_fn(logits, truth)

    def validate() -> tuple[float, float, float]:
        return _validate(words, valid, names, [tags[i] for i in valid], fallback_of(list(names), counts), loss_fn)

    with sparse_tables(student, params):
        run = train_epochs(student, head, params, config, train, loss_of, validate)
    student.eval()
    seconds = time.perf_counter() - started
    head.config.tune = config.tune
    head.config.metrics = {"solver": "adamw, tuned with the model", "best_epoch": run.best_epoch,
                           "epochs_run": run.epochs_run, "valid_entity_f1": run.best[0],
                           "valid_accuracy": run.best[2], "valid_entity_f1_by_epoch": run.scores,
                           "n_train_sentences": len(train), "n_valid_sentences": len(valid), "class_counts": counts,
                           "tune": tune_settings(student, params, config, seconds)}  # fmt: skip
    logger.info("tagger tuned (%s) in %.1fs: best epoch %d, held-out entity F1 %.4f", config.tune, seconds,
                run.best_epoch, run.best[0])  # fmt: skip
    return head


def _tag_ids(sentences: Sequence[Sequence[str]], tags: Sequence[Sequence[str]]) -> tuple[np.ndarray, list[np.ndarray]]:
    """The distinct tags, sorted, and each sentence's tags as their ids; a user's mistake is a DistillError."""
    if not len(sentences):
        raise DistillError("no sentences to tune a tagger on")
    if len(sentences) != len(tags) or any(len(w) != len(t) for w, t in zip(sentences, tags, strict=True)):
        raise DistillError("every sentence needs one tag per word")
    names, flat = np.unique(np.concatenate([np.asarray(t, dtype=str) for t in tags]), return_inverse=True)
    if len(names) < 2:
        raise DistillError(f"a tagger needs at least 2 distinct tags; found {len(names)}")
    return names, np.split(flat.astype(np.int64), np.cumsum([len(t) for t in tags])[:-1])


class _WordBatches:
    """A batch of sentences -> the head's logits of their words that have a vector, and those words' tag ids."""

    def __init__(self, student: TransformerStudent, head: ClassifierHead, ids: list[list[int]],
                 firsts: list[np.ndarray], tag_ids: list[np.ndarray]) -> None:  # fmt: skip
        self.student, self.head, self.ids, self.firsts, self.tag_ids = student, head, ids, firsts, tag_ids

    def __call__(self, batch: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        padded = pad([self.ids[i] for i in batch])
        device = self.student.device
        tokens = self.student.forward_tokens(padded["input_ids"].to(device), padded["attention_mask"].to(device))
        found = [self.firsts[i] >= 0 for i in batch]  # NOTE: a word cut off by the max length has no vector
        rows = np.concatenate([np.full(int(f.sum()), r) for r, f in enumerate(found)])
        positions = np.concatenate([self.firsts[i][f] for i, f in zip(batch, found, strict=True)])
        truth = np.concatenate([self.tag_ids[i][f] for i, f in zip(batch, found, strict=True)])
        logits = self.head(tokens[torch.from_numpy(rows), torch.from_numpy(positions)])  # (words, tags)
        return logits, torch.from_numpy(truth).to(logits.device)


@torch.no_grad()
def _validate(words: _WordBatches, valid: np.ndarray, names: np.ndarray, gold: list[Sequence[str]], fallback: str,
              loss_fn: nn.Module) -> tuple[float, float, float]:  # fmt: skip
    """(entity F1, loss, word accuracy) of the model and tagger on the held-out sentences."""
    words.student.eval()
    words.head.eval()
    predicted: list[list[str]] = []
    losses, right, total = [], 0, 0
    for start in range(0, len(valid), VALID_BATCH):
        batch = valid[start : start + VALID_BATCH]
        logits, truth = words(batch)
        losses.append(float(loss_fn(logits, truth)) * len(truth))
        guess = logits.argmax(dim=1).cpu().numpy()
        right, total = right + int((guess == truth.cpu().numpy()).sum()), total + len(truth)
        at = 0
        for i in batch:
            found = words.firsts[i] >= 0
            tags = np.full(len(found), fallback, dtype=object)
            tags[found] = names[guess[at : at + int(found.sum())]]
            at += int(found.sum())
            predicted.append(list(tags))
    return entity_f1(gold, predicted), sum(losses) / max(1, total), right / max(1, total)
