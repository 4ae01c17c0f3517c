"""The tokens task: a tagger (NER, chunking) on the token vectors in context of a frozen model.

Each word is read by the vector of its first sub-token in context, from a teacher or a transformer
student (a static student has one vector per token whatever its context, and an ONNX export gives
sentence vectors only). The head is `distill.heads.head.ClassifierHead` with task "tokens", trained by the
same `fit_head` (class weights); whole sentences are held out, and their entity F1 chooses the linear
head's regularisation (or stops the MLP):

    sentences, tags = read_tagged("train.conll")
    encode, about = token_encoder_for("runs/default/students/transformer")
    head = train_tagger(encode(sentences), tags, model="runs/default/students/transformer", encoder=about)
    head.save("heads/ner")
    evaluate_tagger(head, encode, test_sentences, test_tags)  # {"entity_f1", "accuracy", "n", "tokens"}
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from tokenizers import Tokenizer
from tqdm.auto import tqdm

from distill.errors import DistillError
from distill.heads.classifier import fit_head, fitted_as
from distill.heads.data import read_table
from distill.heads.head import ClassifierHead, HeadTrainConfig
from distill.io import read_json
from distill.runtime.tagger import OUTSIDE, fallback_of, first_subtokens
from students.base import pad, prepare_tokenizer

if TYPE_CHECKING:
    from distill.teacher.model import Teacher
    from students.transformer import TransformerStudent

logger = logging.getLogger(__name__)

# sentences (lists of words) -> one (n_words, dim) float32 array each; a word with no vector has a row of NaN
TokenEncode = Callable[[Sequence[Sequence[str]]], list[np.ndarray]]
Forward = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (batch, seq) ids, mask -> (batch, seq, dim)
_NEEDS_CONTEXT = "the tokens task needs token vectors in context"


def read_tagged(
    path: str | Path, words_column: str = "tokens", tags_column: str = "tags"
) -> tuple[list[list[str]], list[list[str]]]:
    """Sentences (lists of words) and their tags, one per word; a user's mistake is a DistillError.

    A .conll file holds a word and its tag per line, whitespace-separated: the word is the first field and
    the tag the last (so CoNLL-2003's four columns read as they are), a blank line between sentences and
    `-DOCSTART-` lines skipped. A .jsonl or .parquet file holds a column of word lists and one of tag lists.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if not path.is_file():
        raise DistillError(f"tagged data {str(path)!r} does not exist")
    if suffix == ".csv":
        raise DistillError(f"tagged data {str(path)!r}: a .csv file does not hold lists of words and tags; "
                           "use .conll (a word and its tag per line), .jsonl or .parquet")  # fmt: skip
    if suffix not in (".conll", ".jsonl", ".parquet"):
        raise DistillError(f"tagged data {str(path)!r}: unsupported file type; use .conll, .jsonl or .parquet")
    sentences, tags = _read_conll(path) if suffix == ".conll" else _read_lists(path, words_column, tags_column)
    distinct = sorted({t for sentence in tags for t in sentence})
    if len(distinct) < 2:
        raise DistillError(f"{str(path)!r}: a tagger needs at least 2 distinct tags; found {len(distinct)} "
                           f"({', '.join(map(repr, distinct))})")  # fmt: skip
    return sentences, tags


def _read_conll(path: Path) -> tuple[list[list[str]], list[list[str]]]:
    try:
        lines = path.read_text(encoding="utf-8").split("\n")
    except UnicodeDecodeError as e:
        raise DistillError(f"tagged data {str(path)!r} is not UTF-8 text ({e.reason} at byte {e.start})") from e
    sentences: list[list[str]] = [[]]
    tags: list[list[str]] = [[]]
    for number, line in enumerate(lines, start=1):
        fields = line.split()
        if not fields or fields[0] == "-DOCSTART-":
            if sentences[-1]:
                sentences.append([])
                tags.append([])
            continue
        if len(fields) == 1:
            raise DistillError(f"{str(path)!r} line {number}: one field ({fields[0]!r}); a .conll line is a word "
                               "and its tag (the last field), separated by whitespace")  # fmt: skip
        sentences[-1].append(fields[0])
        tags[-1].append(fields[-1])
    if not sentences[-1]:
        sentences.pop()
        tags.pop()
    if not sentences:
        raise DistillError(f"tagged data {str(path)!r} is empty")
    return sentences, tags


def _read_lists(path: Path, words_column: str, tags_column: str) -> tuple[list[list[str]], list[list[str]]]:
    frame = read_table(path, columns=(words_column, tags_column))
    sentences, tags = [], []
    for row, (words, labels) in enumerate(zip(frame[words_column], frame[tags_column], strict=True), start=1):
        for value, column in ((words, words_column), (labels, tags_column)):
            if not isinstance(value, list | tuple | np.ndarray):
                raise DistillError(f"{str(path)!r} row {row}: {column!r} is not a list (it is {value!r:.40}); "
                                   "give each sentence as a list of words and a list of tags")  # fmt: skip
        if len(words) != len(labels):
            raise DistillError(f"{str(path)!r} row {row}: {len(words)} words but {len(labels)} tags; "
                               "give one tag per word")  # fmt: skip
        if not len(words):
            raise DistillError(f"{str(path)!r} row {row}: no words in {words_column!r}; fill it in or drop it")
        sentences.append([str(w) for w in words])
        tags.append([str(t) for t in labels])
    return sentences, tags


def token_encoder_for(model: str, *, progress: bool = False) -> tuple[TokenEncode, str]:
    """The frozen word-vector function of `model` and a description of it.

    `model` is a saved transformer student folder, or a teacher's folder or Hugging Face name. Any other
    student and an export folder are refused in one line: they have no token vectors in context.
    """
    import students
    from distill.runtime.embedder import CONFIG_FILE, MODEL_FILES
    from students.base import CONFIG_FILE as STUDENT_CONFIG

    path = Path(model)
    if (path / STUDENT_CONFIG).is_file():
        kind = str(read_json(path / STUDENT_CONFIG).get("kind", ""))
        if not hasattr(students.student_class(kind), "forward_tokens"):
            raise DistillError(f"{_NEEDS_CONTEXT}; {model!r} is a {kind} student, which gives one vector per "
                               "token regardless of context: use a transformer student or the teacher")  # fmt: skip
        student = students.load(path)
        return student_token_encoder(student, progress=progress), f"{kind} student {model}"
    if (path / CONFIG_FILE).is_file() and (path / MODEL_FILES["fp32"]).is_file():
        raise DistillError(f"{_NEEDS_CONTEXT}; {model!r} is an ONNX export, which gives sentence vectors only: use "
                           "the transformer student it was exported from, or the teacher")  # fmt: skip
    from distill.teacher.model import Teacher

    return teacher_token_encoder(Teacher.load(model), progress=progress), f"teacher {model}"


def teacher_token_encoder(teacher: Teacher, *, batch_size: int = 32, progress: bool = False) -> TokenEncode:
    """Word vectors from the teacher's last hidden state, its prompt before each sentence as in its targets."""
    tokenizer = prepare_tokenizer(teacher.tokenizer.backend_tokenizer, teacher.max_length)
    return functools.partial(word_vectors, tokenizer=tokenizer, forward=teacher.token_vectors_on_device,
                             prompt=teacher.prompt, pad_id=teacher.tokenizer.pad_token_id or 0,
                             batch_size=batch_size, progress=progress)  # fmt: skip


def student_token_encoder(student: TransformerStudent, *, batch_size: int = 32, progress: bool = False) -> TokenEncode:
    """Word vectors from a transformer student's token vectors (in the teacher's space, as it was trained)."""

    @torch.inference_mode()
    def forward(input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        student.eval()
        return student.forward_tokens(input_ids.to(student.device), attention_mask.to(student.device))

    return functools.partial(word_vectors, tokenizer=student.tokenizer, forward=forward, prompt=student.config.prompt,
                             special_tokens=student.special_tokens, batch_size=batch_size,
                             progress=progress)  # fmt: skip


def word_vectors(
    sentences: Sequence[Sequence[str]], *, tokenizer: Tokenizer, forward: Forward, prompt: str = "",
    special_tokens: bool = True, pad_id: int = 0, batch_size: int = 32, progress: bool = False,
) -> list[np.ndarray]:  # fmt: skip
    """Each sentence's (n_words, dim) float32 word vectors: the vector in context of the word's first sub-token.

    NOTE: the first sub-token stands for its word, the standard alignment of word tags to sub-tokens (BERT's
    CoNLL-2003 recipe; transformers' token-classification examples label only it). A word with no token, cut
    off at the tokenizer's max length or empty after its normaliser, has a row of NaN.
    """
    ids, firsts = first_subtokens(tokenizer, sentences, prompt, special_tokens)
    out: list[np.ndarray] = [np.empty(0)] * len(ids)
    order = np.argsort([-len(x) for x in ids], kind="stable")  # similar lengths together: little padding
    with tqdm(total=len(ids), desc="token vectors", unit="sentence", disable=not progress) as bar:
        for start in range(0, len(order), batch_size):
            index = order[start : start + batch_size]
            batch = pad([ids[i] for i in index], pad_id)
            tokens = forward(batch["input_ids"], batch["attention_mask"]).float().cpu().numpy()  # (batch, seq, dim)
            for row, i in enumerate(index):
                found = firsts[i] >= 0
                vectors = np.full((len(found), tokens.shape[-1]), np.nan, dtype=np.float32)  # (n_words, dim)
                vectors[found] = tokens[row, firsts[i][found]]
                out[i] = vectors
            bar.update(len(index))
    return out


def train_tagger(
    word_vectors: Sequence[np.ndarray], tags: Sequence[Sequence[str]], config: HeadTrainConfig | None = None, *,
    model: str = "", encoder: str = "",
) -> ClassifierHead:  # fmt: skip
    """A tokens head trained on each sentence's (n_words, dim) `word_vectors` and `tags`, kept at its best
    validation entity F1; its metrics in its config.

    A share of the sentences (not of the words, so that no sentence is on both sides) is held out; words
    with no vector (past the model's max length) are left out of training and validation.
    """
    config = config or HeadTrainConfig()
    lengths = np.array([len(t) for t in tags], dtype=np.int64)
    if not len(tags):
        raise DistillError("no sentences to train a tagger on")
    if len(word_vectors) != len(tags) or any(len(v) != n for v, n in zip(word_vectors, lengths, strict=True)):
        raise DistillError("every sentence needs one word vector per tag")
    names, tag_ids = np.unique(np.concatenate([np.asarray(t, dtype=str) for t in tags]), return_inverse=True)
    if len(names) < 2:
        raise DistillError(f"a tagger needs at least 2 distinct tags; found {len(names)}")
    vectors = np.concatenate(word_vectors)  # (words, dim)
    kept = ~np.isnan(vectors).any(axis=1)
    if not kept.all():
        logger.warning("%d of %d words have no vector (past the model's max length): left out of training",
                       len(kept) - kept.sum(), len(kept))  # fmt: skip
    vectors, tag_ids, sentence_of = vectors[kept], tag_ids[kept], np.repeat(np.arange(len(tags)), lengths)[kept]
    train_sentences, valid_sentences = sentence_split(len(tags), config.valid_fraction, config.seed)
    if not len(valid_sentences):  # NOTE: a single sentence: nothing to hold out, so stop on the training set
        logger.warning("one sentence: no validation split, the head is chosen on the training set")
        valid_sentences = train_sentences
    train, valid = (np.flatnonzero(np.isin(sentence_of, s)) for s in (train_sentences, valid_sentences))
    if not len(train):
        raise DistillError("no training word has a vector: the model's max length cuts them all")
    split_at = np.cumsum(np.bincount(sentence_of[valid], minlength=len(tags))[valid_sentences])[:-1]
    gold = [list(names[part]) for part in np.split(tag_ids[valid], split_at)]

    def score(predicted: np.ndarray) -> float:
        return entity_f1(gold, [list(names[part]) for part in np.split(predicted, split_at)])

    head, valid_ids = fit_head(vectors, tag_ids, [str(n) for n in names], train, valid, config, score=score,
                               task="tokens", model=model, encoder=encoder)  # fmt: skip
    predicted = names[valid_ids]
    head.config.metrics = {
        "valid_entity_f1": entity_f1(gold, [list(p) for p in np.split(np.asarray(predicted), split_at)]),
        "valid_accuracy": float(np.mean(np.asarray(predicted) == names[tag_ids[valid]])) if len(valid) else 0.0,
        **head.config.metrics,  # n_train and n_valid count words
        "n_train_sentences": len(train_sentences),
        "n_valid_sentences": len(valid_sentences),
        "words_without_vector": int(len(kept) - kept.sum()),
    }
    logger.info("tagger: %d tags, %s, validation entity F1 %.4f", len(names),
                fitted_as(head), head.config.metrics["valid_entity_f1"])  # fmt: skip
    return head


def sentence_split(n: int, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(train, valid) sentence indices with about `fraction` of `n` in valid (at least one when there are two)."""
    order = np.random.default_rng(seed).permutation(n)
    take = max(1, round(n * fraction)) if n > 1 else 0
    return np.sort(order[take:]), np.sort(order[:take])


def predict_tags(head: ClassifierHead, word_vectors: Sequence[np.ndarray]) -> list[list[str]]:
    """The tag of each word of each sentence; a word with no vector (past the model's max length) gets
    `fallback_tag(head)`."""
    _check_task(head)
    if not len(word_vectors):
        return []
    vectors = np.concatenate(word_vectors)  # (words, dim)
    kept = ~np.isnan(vectors).any(axis=1)
    tags = np.full(len(vectors), fallback_tag(head), dtype=object)
    if kept.any():
        tags[kept] = head.predict(vectors[kept])
    if not kept.all():
        logger.warning("%d of %d words have no vector (past the model's max length): tagged %r",
                       len(kept) - kept.sum(), len(kept), fallback_tag(head))  # fmt: skip
    return [list(part) for part in np.split(tags, np.cumsum([len(v) for v in word_vectors])[:-1])]


def fallback_tag(head: ClassifierHead) -> str:
    """The tag of a word the model gives no vector: "O" when the head has it, else its most frequent tag."""
    return fallback_of(head.labels, head.config.metrics.get("class_counts") or {})


def evaluate_tagger(head: ClassifierHead | str | Path, token_encode: TokenEncode, sentences: Sequence[Sequence[str]],
                    tags: Sequence[Sequence[str]]) -> dict[str, Any]:  # fmt: skip
    """{"entity_f1", "accuracy" (of words), "n" (sentences), "tokens" (words)} of a tokens head on `sentences`."""
    head = head if isinstance(head, ClassifierHead) else ClassifierHead.load(head)
    _check_task(head)
    return score_tagger(head, token_encode(sentences), tags)


def score_tagger(head: ClassifierHead, word_vectors: Sequence[np.ndarray],
                 tags: Sequence[Sequence[str]]) -> dict[str, Any]:  # fmt: skip
    """`evaluate_tagger` on word vectors already embedded: one (n_words, dim) array a sentence."""
    unknown = sorted({t for sentence in tags for t in sentence} - set(head.labels))
    if unknown:
        logger.warning("tags the head was not trained on (always counted wrong): %s", ", ".join(unknown))
    predicted = predict_tags(head, word_vectors)
    gold = [t for sentence in tags for t in sentence]
    right = sum(g == p for g, p in zip(gold, (p for sentence in predicted for p in sentence), strict=True))
    return {"entity_f1": entity_f1(tags, predicted), "accuracy": right / max(1, len(gold)), "n": len(tags),
            "tokens": len(gold)}  # fmt: skip


def _check_task(head: ClassifierHead) -> None:
    if head.config.task != "tokens":
        raise DistillError(f"this head was trained for the {head.config.task} task, not tokens; "
                           "measure it with `distill head eval` on labelled texts")  # fmt: skip


def entity_spans(tags: Sequence[str]) -> set[tuple[str, int, int]]:
    """The (type, first word, last word + 1) of each entity in one sentence's BIO / IOB2 tags.

    B-X begins an entity of type X and I-X continues one; an I-X that follows neither a B-X nor an I-X
    begins one, as seqeval's default (conlleval's) reading does. A tag without a B- / I- prefix ("PER", the
    IO scheme) reads as I-X, so consecutive equal tags make one entity. "O" is outside every entity.
    """
    spans = set()
    kind, start = None, 0
    for i, tag in enumerate([*tags, OUTSIDE]):  # the final "O" closes the last entity
        prefix, name = (tag[0], tag[2:]) if tag[:2] in ("B-", "I-") else ("O" if tag == OUTSIDE else "I", tag)
        if kind is not None and (prefix != "I" or name != kind):
            spans.add((kind, start, i))
            kind = None
        if prefix != "O" and kind is None:
            kind, start = name, i
    return spans


def entity_f1(gold: Sequence[Sequence[str]], predicted: Sequence[Sequence[str]]) -> float:
    """Micro F1 of entities over sentences: an entity counts when its type and both ends match.

    0 when there are no entities at all, gold or predicted (seqeval's answer too).
    """
    if len(gold) != len(predicted):
        raise ValueError(f"{len(gold)} gold sentences but {len(predicted)} predicted")
    right = found = expected = 0
    for gold_tags, predicted_tags in zip(gold, predicted, strict=True):
        if len(gold_tags) != len(predicted_tags):
            raise ValueError(f"a sentence of {len(gold_tags)} gold tags has {len(predicted_tags)} predicted")
        truth, guess = entity_spans(gold_tags), entity_spans(predicted_tags)
        right, found, expected = right + len(truth & guess), found + len(guess), expected + len(truth)
    return 2 * right / (found + expected) if right else 0.0
