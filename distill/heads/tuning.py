"""A head trained together with its model (`distill head train --tune`): the model's vectors follow the task.

A frozen head (`tune="none"`) learns from vectors that stay the teacher's. Tuned, some of the model
trains with the head on the labelled texts: the last of its layers (`last`), its attention query
projections (`query`), or everything, embeddings included (`all`); a static student's `all` is its
table rows, at a table's learning rate. The teacher is tuned as a transformer student with all its
layers. The tuned model's vectors are no longer the teacher's, so it is saved inside the head folder
(`distill.heads.models.TUNED_MODEL_DIR`) and the head runs with it alone:

    student = as_student(load_model("runs/default/students/transformer"), "...")
    head = tune_classifier(student, texts, labels, TuneConfig(tune="all"))  # trains `student` in place
    save_tuned(head, student, "heads/topic")  # head.json, head.safetensors, model/

Training starts from a frozen head fitted on the training rows (so epoch 0 is the frozen baseline),
optionally after a contrastive start (`distill.heads.contrastive`), then runs AdamW epochs over the
model and the head, and keeps the epoch of best validation macro-F1 on the stratified split the head
training makes (early stopping).
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import logging
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from distill.errors import DistillError
from distill.heads.classifier import train_classifier
from distill.heads.contrastive import contrastive_start
from distill.heads.head import ClassifierHead, HeadTrainConfig, class_weights, stratified_split
from distill.heads.models import TUNED_MODEL_DIR
from distill.heads.tune_config import TABLE_LRS, TuneConfig
from distill.io import atomic_dir
from students.base import Student, pad
from students.layer_subset import family, layer_list
from students.static import StaticStudent
from students.transformer import TransformerStudent

logger = logging.getLogger(__name__)

# NOTE: the last name of an attention query projection in the families a transformer student is built from:
# BERT / RoBERTa / XLM-R / ELECTRA `attention.self.query`, MPNet `attn.q`, DistilBERT `attention.q_lin`, and
# the `q_proj` of most newer models. ModernBERT keeps q, k and v in one matrix (`Wqkv`): nothing matches there.
QUERY_NAMES = ("query", "q", "q_lin", "q_proj")


def trainable(student: Student, tune: str) -> dict[str, nn.Parameter]:
    """The student's parameters `tune` trains, by name; a setting that means nothing for it is a DistillError."""
    if isinstance(student, StaticStudent):
        if tune in ("last", "query"):
            raise DistillError(f"a static student has no layers or attention: --tune {tune} means nothing for it; "
                               "use --tune all (its table rows)")  # fmt: skip
        if student.factors is not None:
            student.finalize()  # a student fresh from training: one plain table
        return {"embedding.weight": student.embedding.weight} if tune == "all" else {}
    if not isinstance(student, TransformerStudent):
        raise DistillError(f"a {student.kind} student cannot be tuned; tune the static student its table writes "
                           "(`distill write-table`), a transformer student or the teacher")  # fmt: skip
    named = dict(student.named_parameters())
    if tune == "all":
        return named
    if tune == "last":
        prefix, layers = layer_list(student.encoder)
        start = f"encoder.{prefix}.{len(layers) - 1}."
        return {name: p for name, p in named.items() if name.startswith(start)}
    if tune == "query":
        return _query_parameters(student, named)
    return {}


def _query_parameters(student: TransformerStudent, named: dict[str, nn.Parameter]) -> dict[str, nn.Parameter]:
    """The weights and biases of every attention query projection (a Linear whose name ends in QUERY_NAMES)."""
    modules = [f"encoder.{name}." for name, module in student.encoder.named_modules()
               if isinstance(module, nn.Linear) and name.rsplit(".", 1)[-1] in QUERY_NAMES]  # fmt: skip
    if not modules:
        raise DistillError(
            f"--tune query: this {family(student.encoder.config)!r} model has no separate attention "
            f"query projection (a Linear named {', '.join(QUERY_NAMES)}); use --tune last or all"
        )
    return {name: p for name, p in named.items() if name.startswith(tuple(modules))}


def model_lr(student: Student, config: TuneConfig) -> float:
    """The learning rate of the student's trained parameters: a static student's table's, or the model's."""
    if not isinstance(student, StaticStudent):
        return config.lr
    if config.table_lr is None:
        raise ValueError("a table learning rate is chosen before training")  # a bug, not a user's mistake
    return config.table_lr


def optimizers(student: Student, params: dict[str, nn.Parameter], config: TuneConfig,
               head: ClassifierHead | None = None) -> list[torch.optim.Optimizer]:  # fmt: skip
    """AdamW over the trained parameters (and the head's at `config.head_lr`); SparseAdam over embedding tables.

    NOTE: a table's gradient is sparse (`sparse_tables`), so a step costs the rows of the batch, not the
    vocabulary: the default student's 30522-row table made AdamW's step 7x slower than SparseAdam's. And a
    row no text uses then never moves.
    """
    tables = {id(m.weight) for m in student.modules() if isinstance(m, nn.Embedding)}
    dense = [p for p in params.values() if id(p) not in tables]
    sparse = [p for p in params.values() if id(p) in tables]
    lr = model_lr(student, config)
    groups = [{"params": dense, "lr": lr}] if dense else []
    if head is not None:
        groups.append({"params": list(head.parameters()), "lr": config.head_lr})
    out: list[torch.optim.Optimizer] = [torch.optim.AdamW(groups, weight_decay=config.weight_decay)] if groups else []
    return out + ([torch.optim.SparseAdam(sparse, lr=lr)] if sparse else [])


@contextlib.contextmanager
def sparse_tables(student: Student, params: dict[str, nn.Parameter]) -> Iterator[None]:
    """The student's trained embedding tables give sparse gradients for a while (as `nn.Embedding(sparse=True)`)."""
    chosen = {id(p) for p in params.values()}
    tables = [m for m in student.modules() if isinstance(m, nn.Embedding) and id(m.weight) in chosen]
    before = [m.sparse for m in tables]
    for m in tables:
        m.sparse = True
    try:
        yield
    finally:
        for m, sparse in zip(tables, before, strict=True):
            m.sparse = sparse


def step(optimizers: list[torch.optim.Optimizer], loss: torch.Tensor) -> None:
    """One optimisation step of `loss` with every optimizer."""
    for optimizer in optimizers:
        optimizer.zero_grad()
    loss.backward()
    for optimizer in optimizers:
        optimizer.step()


def tune_classifier(
    student: Student, texts: Sequence[str], labels: Sequence[str], config: TuneConfig | None = None, *,
    model: str = "", encoder: str = "",
) -> ClassifierHead:  # fmt: skip
    """Train `student` (in place) and a head together on labelled texts; the head, with its metrics.

    Only the parameters `config.tune` names change; every other one stays bit-identical. The student
    is left at the epoch of best validation macro-F1 (epoch 0: the frozen model and its head).
    """
    config = config or TuneConfig()
    with torch_threads(config.threads):
        if isinstance(student, StaticStudent) and config.table_lr is None:
            return _tune_table_lrs(student, texts, labels, config, model, encoder)
        return _tune(student, texts, labels, config, model, encoder)


def _tune_table_lrs(student: StaticStudent, texts: Sequence[str], labels: Sequence[str], config: TuneConfig,
                    model: str, encoder: str) -> ClassifierHead:  # fmt: skip
    """`_tune` from the same table at each of `TABLE_LRS`, keeping the head and table of best validation macro-F1.

    NOTE: a table's best rate depends on the data (measured: 1e-3 on SUBJ, 3e-3 on MR and TREC-6), and a static
    student tunes in seconds, so each is tried, as the frozen linear head tries each C.
    """
    trainable(student, config.tune)  # NOTE: finalises a student fresh from training into one plain table
    table = student.embedding.weight
    start, best, tried, seconds = table.detach().clone(), None, {}, 0.0
    for lr in TABLE_LRS:
        with torch.no_grad():
            table.copy_(start)
        head = _tune(student, texts, labels, dataclasses.replace(config, table_lr=lr), model, encoder)
        tried[f"{lr:g}"] = head.config.metrics["valid_macro_f1"]
        seconds += head.config.metrics["tune"]["seconds"]
        if best is None or tried[f"{lr:g}"] > best[0].config.metrics["valid_macro_f1"]:
            best = (head, table.detach().clone())
    head, weights = best  # type: ignore[misc]
    with torch.no_grad():
        table.copy_(weights)
    head.config.metrics["tune"].update(seconds=round(seconds, 2), table_lr_by_validation_f1=tried)
    logger.info("table learning rate %g of %s, by validation macro-F1", head.config.metrics["tune"]["lr"], tried)
    return head


@contextlib.contextmanager
def torch_threads(threads: int) -> Iterator[None]:
    """Torch on `threads` threads for a while (0: as it is)."""
    before = torch.get_num_threads()
    torch.set_num_threads(threads or before)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _tune(student: Student, texts: Sequence[str], labels: Sequence[str], config: TuneConfig, model: str,
          encoder: str) -> ClassifierHead:  # fmt: skip
    started = time.perf_counter()
    names, label_ids = np.unique(np.asarray(labels, dtype=str), return_inverse=True)
    if len(names) < 2:
        raise DistillError(f"a classifier needs at least 2 classes; found {len(names)}")
    params = trainable(student, config.tune)
    head_config = config.head or HeadTrainConfig(seed=config.seed)
    train, valid = stratified_split(label_ids, head_config.valid_fraction, config.seed)
    if not len(valid):
        raise DistillError("tuning needs a validation split: give every class at least 2 labelled texts")
    ids = student.token_ids(texts)
    freeze_all_but(student, params)
    if config.contrastive_epochs:
        with sparse_tables(student, params):
            contrastive_start(student, [ids[i] for i in train], label_ids[train], optimizers(student, params, config),
                              config)  # fmt: skip
    head = _starting_head(student, [texts[i] for i in train], names[label_ids[train]], head_config, model, encoder)
    with sparse_tables(student, params):
        fitted = _train_together(student, head, ids, label_ids, train, valid, params, config)
    student.eval()
    seconds = time.perf_counter() - started
    head.config.tune = config.tune
    head.config.metrics = {**fitted, "n_train": len(train), "n_valid": len(valid),
                           "tune": tune_settings(student, params, config, seconds)}  # fmt: skip
    logger.info("tuned (%s) in %.1fs: best epoch %d, validation macro-F1 %.4f", config.tune, seconds,
                fitted["best_epoch"], fitted["valid_macro_f1"])  # fmt: skip
    return head


def tune_settings(
    student: Student, params: dict[str, nn.Parameter], config: TuneConfig, seconds: float
) -> dict[str, Any]:
    """What `head.json` records of the tuning."""
    return {"setting": config.tune, "trainable_parameters": sum(p.numel() for p in params.values()),
            "lr": model_lr(student, config), "head_lr": config.head_lr, "epochs": config.epochs,
            "contrastive_epochs": config.contrastive_epochs, "pairs_per_text": config.pairs_per_text,
            "seconds": round(seconds, 2)}  # fmt: skip


def freeze_all_but(student: Student, params: dict[str, nn.Parameter]) -> None:
    chosen = {id(p) for p in params.values()}
    for p in student.parameters():
        p.requires_grad_(id(p) in chosen)


def _starting_head(student: Student, texts: Sequence[str], labels: np.ndarray, config: HeadTrainConfig, model: str,
                   encoder: str) -> ClassifierHead:  # fmt: skip
    """The frozen head on the training rows' vectors (the validation rows left out, so they stay honest)."""
    head = train_classifier(student.encode(texts), [str(x) for x in labels], config, model=model,
                            encoder=encoder)  # fmt: skip
    head.config.metrics = {}
    return head


def _train_together(
    student: Student, head: ClassifierHead, ids: list[list[int]], label_ids: np.ndarray, train: np.ndarray,
    valid: np.ndarray, params: dict[str, nn.Parameter], config: TuneConfig,
) -> dict[str, Any]:  # fmt: skip
    """`train_epochs` of a classifier: class-weighted cross-entropy, early-stopped on the validation macro-F1."""
    weights = torch.tensor(class_weights(label_ids[train], len(head.labels)), dtype=torch.float32)
    loss_fn = nn.CrossEntropyLoss(weight=weights)
    y = torch.from_numpy(label_ids.astype(np.int64))

    def loss_of(batch: np.ndarray) -> torch.Tensor:
        return loss_fn(head(_forward(student, [ids[i] for i in batch])), y[batch])

    run = train_epochs(student, head, params, config, train, loss_of,
                       lambda: _validate(student, head, ids, y, valid, loss_fn))  # fmt: skip
    return {"solver": "adamw, tuned with the model", "best_epoch": run.best_epoch, "epochs_run": run.epochs_run,
            "valid_macro_f1": run.best[0], "valid_accuracy": run.best[2],
            "valid_macro_f1_by_epoch": run.scores}  # fmt: skip


@dataclass
class EpochRun:
    """How `train_epochs` went: the kept epoch (0: as it started), its (score, loss, accuracy), each epoch's score."""

    best_epoch: int
    epochs_run: int
    best: tuple[float, float, float]
    scores: list[float]


def train_epochs(
    student: Student, head: ClassifierHead, params: dict[str, nn.Parameter], config: TuneConfig, train: np.ndarray,
    loss_of: Callable[[np.ndarray], torch.Tensor], validate: Callable[[], tuple[float, float, float]],
) -> EpochRun:  # fmt: skip
    """AdamW epochs over the student's `params` and the head, early-stopped on `validate`'s score.

    `train` are the training items (texts or sentences), shuffled each epoch and taken `config.batch_size` at a
    time; `loss_of(batch)` is the batch's loss, `validate()` the held-out (score, loss, accuracy), higher score
    better. Restores the best epoch's weights (epoch 0: as they started).
    """
    steppers = optimizers(student, params, config, head)
    generator = torch.Generator().manual_seed(config.seed)
    best = validate()
    history, best_epoch, best_state, waited = [best], 0, _state(params, head), 0
    steps = -(-len(train) // config.batch_size)
    with tqdm(total=config.epochs * steps, desc=f"tuning ({config.tune})", unit="batch") as bar:
        for epoch in range(1, config.epochs + 1):
            student.train()
            head.train()
            order = train[torch.randperm(len(train), generator=generator).numpy()]
            for start in range(0, len(order), config.batch_size):
                step(steppers, loss_of(order[start : start + config.batch_size]))
                bar.update(1)
            result = validate()
            history.append(result)
            bar.set_postfix(valid=f"{result[0]:.4f}")
            # NOTE: as the frozen MLP head's early stopping: at an equal score, a 0.1% lower loss is better
            if result[0] > best[0] or (result[0] == best[0] and result[1] < best[1] * (1 - 1e-3)):
                best, best_epoch, best_state, waited = result, epoch, _state(params, head), 0
            else:
                waited += 1
                if waited >= config.patience:
                    break
    _restore(params, head, best_state)
    return EpochRun(best_epoch, len(history) - 1, best, [round(h[0], 6) for h in history])


def _forward(student: Student, ids: Sequence[Sequence[int]]) -> torch.Tensor:
    batch = pad(ids)
    return student(batch["input_ids"].to(student.device), batch["attention_mask"].to(student.device))  # (batch, dim)


@torch.no_grad()
def _validate(student: Student, head: ClassifierHead, ids: list[list[int]], y: torch.Tensor, valid: np.ndarray,
              loss_fn: nn.Module) -> tuple[float, float, float]:  # fmt: skip
    """(macro-F1, loss, accuracy) of the model and head on the validation rows."""
    from sklearn.metrics import accuracy_score, f1_score

    student.eval()
    head.eval()
    logits = torch.cat([head(_forward(student, [ids[i] for i in valid[start : start + 256]]))
                        for start in range(0, len(valid), 256)])  # fmt: skip  # (n_valid, classes)
    predicted, truth = logits.argmax(dim=1).numpy(), y[valid].numpy()
    return (float(f1_score(truth, predicted, average="macro", zero_division=0)), float(loss_fn(logits, y[valid])),
            float(accuracy_score(truth, predicted)))  # fmt: skip


def _state(params: dict[str, nn.Parameter], head: ClassifierHead) -> dict[str, Any]:
    return {"model": {k: p.detach().clone() for k, p in params.items()}, "head": copy.deepcopy(head.state_dict())}


def _restore(params: dict[str, nn.Parameter], head: ClassifierHead, state: dict[str, Any]) -> None:
    with torch.no_grad():
        for name, p in params.items():
            p.copy_(state["model"][name])
    head.load_state_dict(state["head"])
    head.eval()


def save_tuned(head: ClassifierHead, student: Student, path: str | Path) -> Path:
    """The head folder of a tuned head, atomically: `head.json`, `head.safetensors` and the tuned model in
    `TUNED_MODEL_DIR`."""
    path = Path(path)
    for p in student.parameters():
        p.requires_grad_(True)  # NOTE: as a loaded student has them; the saved weights do not depend on it
    with atomic_dir(path) as tmp:
        head.write_files(tmp)
        student.save(tmp / TUNED_MODEL_DIR)
    return path
