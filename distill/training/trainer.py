"""One training loop for every student: regression on the teacher's cached targets.

AdamW with linear warm-up and cosine decay, gradient clipping, validation fidelity after each
epoch, early stopping with the best weights kept, a checkpoint after every epoch for
`resume` (once training ends, only the weights it ended with: a finished student resumes as
finished), and a JSON-lines metrics log.

Batches come from a DataLoader (workers and pinned memory on a GPU): texts are read from the
cache and tokenized per batch, so nothing grows with the corpus. Under several processes
(`distill.distributed`) the student trains as DistributedDataParallel: every global batch is
cut into one share per rank, so a step sees the same texts and the same averaged gradient as
in one process, and the learning-rate schedule is unchanged.
"""

from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from distill import distributed
from distill.data.basis import teacher_basis
from distill.data.corpus import Split
from distill.data.targets import Targets, TokenTargets
from distill.device import Placement
from distill.errors import DistillError
from distill.training.checkpoint import CHECKPOINT_FILE, Checkpoint
from distill.training.fidelity import fidelity, fidelity_sum, token_fidelity
from distill.training.losses import MatryoshkaLoss, make_loss, make_sentence_loss
from distill.training.settings import TrainConfig
from students.base import Student, TextEncoder, pad

if TYPE_CHECKING:
    from distill.teacher.model import Teacher

logger = logging.getLogger(__name__)

__all__ = ["TrainConfig", "TrainResult", "Trainer", "fidelity", "token_fidelity", "warmup_steps"]

MIN_WARMUP_STEPS = 20


def warmup_steps(fraction: float, total: int) -> int:
    """Steps of linear warm-up: `fraction` of the run, but at least MIN_WARMUP_STEPS or a third of a short run.

    NOTE: a few thousand sentences give about 10 steps an epoch, and 5% of that is one step: Adam's
    first full-size steps then wreck the static student's shared dim x dim map (3,000 sentences of
    the default teacher, 1 epoch: 0.700 -> 0.666 validation fidelity with 1 warm-up step, 0.757
    with 3; 6 epochs: 0.822 -> 0.824). Runs of 400 steps or more keep their fraction.
    """
    return max(1, int(fraction * total), min(MIN_WARMUP_STEPS, total // 3))


@dataclass
class TrainResult:
    best_fidelity: float
    best_epoch: int  # 0: no epoch beat the starting point, which was kept
    epochs_run: int
    seconds: float
    start_fidelity: float  # validation fidelity as built from the teacher, before any training
    finished_before: bool = False  # resumed from a finished checkpoint: nothing was trained now


class TrainBatches(Dataset):
    """One training batch per item: `dataset[rows]` tokenizes those texts and gathers their targets.

    Picklable (the targets reopen their memory maps in a worker), so a DataLoader's worker
    processes prepare the next batches while the device trains on this one.
    """

    def __init__(self, targets: Targets, encode: TextEncoder, token_vectors: bool) -> None:
        self.targets, self.encode, self.token_vectors = targets, encode, token_vectors

    def __getitem__(self, rows: np.ndarray) -> dict[str, torch.Tensor]:
        batch = pad(self.encode(self.targets.texts.take(rows)))
        batch["teacher"] = torch.from_numpy(np.asarray(self.targets.sentence_vectors[rows], dtype=np.float32))
        if self.token_vectors:
            tokens = torch.zeros((*batch["input_ids"].shape, self.targets.token_vectors.shape[1]))
            for row, i in enumerate(rows):
                vectors = self.targets.tokens_of(int(i))[1]
                tokens[row, : len(vectors)] = torch.from_numpy(np.asarray(vectors, dtype=np.float32))
            batch["token_targets"] = tokens
        return batch


class _Step(nn.Module):
    """The student's training forward as one `forward`, which is what DistributedDataParallel wraps."""

    def __init__(self, student: Student) -> None:
        super().__init__()
        self.student = student

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, outputs: str) -> Any:
        """`outputs`: "sentence", "tokens" (token and sentence vectors) or "hidden" (and the kept layers' outputs)."""
        if outputs == "hidden":
            return self.student.forward_with_hidden(input_ids, attention_mask)
        if outputs == "tokens":
            return self.student.forward_with_tokens(input_ids, attention_mask)
        return self.student(input_ids, attention_mask)


class Trainer:
    def __init__(
        self,
        student: Student,
        targets: Targets,
        config: TrainConfig,
        work_dir: Path,
        placement: Placement | None = None,
        *,
        token_targets: TokenTargets = TokenTargets.STORE,
        teacher: Teacher | None = None,
    ) -> None:
        """`placement`: the device the student trains on and the autocast precision of its steps (default: CPU fp32).

        `token_targets`: where a token loss gets the teacher's token vectors: the cache (`store`)
        or `teacher`, run on each batch (`online`).
        """
        self.placement = placement or Placement.cpu()
        self.group = distributed.group()
        self.student, self.targets, self.config = student.to(self.placement.device), targets, config
        self.token_targets, self.teacher = TokenTargets(token_targets), teacher
        self.scaler = self.placement.grad_scaler()
        self.work_dir = Path(work_dir)
        self.loss = make_loss(config.loss)  # each token vector against its target
        self.sentence_loss = make_sentence_loss(config.loss, config.similarity_weight, config.index_weight,
                                                config.rank_weight, config.rank_temperature)  # fmt: skip
        if config.matryoshka:
            self.sentence_loss = self._matryoshka(self.sentence_loss)
        self.train_index = targets.indices(Split.TRAIN)
        self.valid_index = targets.indices(Split.VALID)[: config.valid_texts]
        if len(self.train_index) == 0 or len(self.valid_index) == 0:
            raise DistillError("the corpus needs texts in both the train and the validation split; give it more text")
        if len(self.train_index) < self.group.world:
            raise DistillError(f"{len(self.train_index)} training texts cannot be shared by {self.group.world} "
                               "processes; give the corpus more text")  # fmt: skip
        self.lengths = targets.token_counts()  # NOTE: the teacher's counts; batches of like lengths pad least
        mine = distributed.shard(self.valid_index, self.group)
        self.valid_ids = student.token_ids(targets.texts.take(mine))
        self.valid_targets = np.asarray(targets.sentence_vectors[mine])
        if config.token_loss_weight > 0:
            self._check_token_targets()
        if config.hidden_loss_weight > 0:
            self._check_hidden_targets()
        self.steps_per_epoch = math.ceil(len(self.train_index) / config.batch_size)
        self.optimizer = torch.optim.AdamW(
            student.param_groups(config.lr), lr=config.lr, weight_decay=config.weight_decay
        )
        total = self.steps_per_epoch * config.epochs
        warmup = warmup_steps(config.warmup, total)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer,
            lambda step: min(1.0, (step + 1) / warmup) * 0.5 * (1 + math.cos(math.pi * min(step, total) / total)),
        )
        self.checkpoint = Checkpoint(self.work_dir / CHECKPOINT_FILE, self.student, self.optimizer, self.scheduler,
                                     self.scaler)  # fmt: skip
        self.step = _Step(self.student)
        if self.group.active:
            # NOTE: buffers (the static table's base, the generator's features) are synced from rank 0
            # once, at the start, and never change, so they are not sent each step; some students
            # leave a weight unused in training (the static table while its factors train).
            devices = [self.placement.device] if self.placement.device.type == "cuda" else None
            self.step = DistributedDataParallel(self.step, device_ids=devices, forward_sync_buffers=False,
                                                find_unused_parameters=True)  # fmt: skip
        stored = config.token_loss_weight > 0 and self.token_targets is TokenTargets.STORE
        self.data = TrainBatches(targets, student.text_encoder(), token_vectors=stored)

    @property
    def checkpoint_path(self) -> Path:
        return self.checkpoint.path

    def _matryoshka(self, base: nn.Module) -> MatryoshkaLoss:
        """`base` on the full sentence vectors and on each of their prefixes in the teacher's basis of `targets`."""
        dim = self.targets.dim
        if max(self.config.matryoshka) >= dim:
            raise DistillError(f"matryoshka dims must be between 1 and {dim - 1} (the teacher's vectors have {dim}), "
                               f"not {','.join(map(str, self.config.matryoshka))}")  # fmt: skip
        basis = teacher_basis(self.targets)
        logger.info("%s: Matryoshka training at %s dims (weight %g each)", self.student.kind,
                    ",".join(map(str, self.config.matryoshka)), self.config.matryoshka_weight)  # fmt: skip
        loss = MatryoshkaLoss(base, torch.from_numpy(basis.mean), torch.from_numpy(basis.directions),
                              self.config.matryoshka, self.config.matryoshka_weight)  # fmt: skip
        return loss.to(self.placement.device)

    def _check_token_targets(self) -> None:
        if not hasattr(self.student, "forward_with_tokens"):
            raise DistillError("a token loss needs a student that gives token vectors")
        if self.token_targets is TokenTargets.STORE and self.targets.token_vectors is None:
            raise DistillError("a token loss with --token-targets store needs targets built with token vectors")
        if self.token_targets is TokenTargets.ONLINE and self.teacher is None:
            raise DistillError("a token loss with --token-targets online needs the teacher")
        if self.token_targets is TokenTargets.NONE:
            raise DistillError("a token loss needs token targets; use --token-targets store or online")
        probe = self.train_index[:32]
        offsets = self.targets.token_offsets
        for i, ids in zip(probe, self.student.token_ids(self.targets.texts.take(probe)), strict=True):
            if not np.array_equal(self.targets.token_ids[offsets[i] : offsets[i + 1]], ids):
                raise DistillError(
                    "the student's tokenization differs from the teacher's; a token loss needs both equal"
                )

    def _check_hidden_targets(self) -> None:
        if not hasattr(self.student, "forward_with_hidden") or self.teacher is None:
            raise DistillError("a hidden-state loss needs the transformer student and the teacher")
        if int(self.student.encoder.config.hidden_size) != int(self.teacher.model.config.hidden_size):
            raise DistillError("a hidden-state loss needs a student as wide as its teacher; drop hidden-size")

    def validate(self) -> float:
        """Validation fidelity: each rank scores its share, the sums are added up."""
        total, count = distributed.all_sum(fidelity_sum(self.student, self.valid_ids, self.valid_targets))
        return total / max(count, 1)

    def train(self, resume: bool = False, progress: bool = False) -> TrainResult:
        """Train until the epochs run out or validation fidelity stops improving; keep the best weights.

        The starting point competes too: its validation fidelity is measured before the first epoch,
        and a run whose epochs are all worse ends with the student as it was built. With `resume`, an
        interrupted run goes on from its last epoch, and a finished one ends at once with its weights.
        """
        if self.group.is_main:
            self.work_dir.mkdir(parents=True, exist_ok=True)
        state = self._start(resume)
        finished_before = bool(state.get("finished"))
        if not finished_before:
            self._run_epochs(state, progress)
            self.checkpoint.load_weights(state["best_state"])
            if self.group.is_main:
                self.checkpoint.save_finished(state, asdict(self.config))
        self.student.eval()
        return TrainResult(state["best"], state["best_epoch"], state["epoch"], state["seconds"], state["start"],
                           finished_before)  # fmt: skip

    def _start(self, resume: bool) -> dict:
        """The state training starts from: the checkpoint's with `resume` (where there is one), else a fresh one."""
        if resume and self.checkpoint_path.is_file():
            state = self.checkpoint.load(self.placement.device)
            if state.get("finished"):
                logger.info("%s: already trained (%d epochs, validation fidelity %.4f); --resume keeps it as it is",
                            self.student.kind, state["epoch"], state["best"])  # fmt: skip
            else:
                logger.info("resuming %s from epoch %d (best fidelity %.4f)", self.student.kind, state["epoch"],
                            state["best"])  # fmt: skip
            return state
        state = self._fresh_state()
        start = self.validate()
        state.update(start=start, best=start, best_state=self.checkpoint.weights())
        self._log({"epoch": 0, "valid_fidelity": start})
        logger.info("%s: validation fidelity %.4f before training", self.student.kind, start)
        return state

    def _run_epochs(self, state: dict, progress: bool) -> None:
        """Epochs from `state["epoch"]` on until the last or until patience runs out, a checkpoint after each."""
        torch.manual_seed(self.config.seed)
        started = time.perf_counter() - state["seconds"]
        total_steps = self.steps_per_epoch * self.config.epochs
        with tqdm(total=total_steps, initial=state["epoch"] * self.steps_per_epoch, desc=f"train {self.student.kind}",
                  unit="step", disable=not (progress and self.group.is_main)) as bar:  # fmt: skip
            while state["epoch"] < self.config.epochs and state["bad_epochs"] < self.config.patience:
                loss = self._epoch(state["epoch"], bar)
                valid = self.validate()
                state["epoch"] += 1
                if valid > state["best"] + 1e-5:
                    best = self.checkpoint.weights()
                    state.update(best=valid, best_epoch=state["epoch"], bad_epochs=0, best_state=best)
                else:
                    state["bad_epochs"] += 1
                state["seconds"] = time.perf_counter() - started
                bar.set_postfix(loss=f"{loss:.4f}", valid=f"{valid:.4f}", best=f"{state['best']:.4f}")
                self._log({"epoch": state["epoch"], "train_loss": loss, "valid_fidelity": valid,
                           "lr": self.scheduler.get_last_lr()[0], "seconds": round(state["seconds"], 2)})  # fmt: skip
                if self.group.is_main:
                    self.checkpoint.save(state, asdict(self.config))
        state["seconds"] = time.perf_counter() - started

    def _epoch(self, epoch: int, bar: tqdm) -> float:
        self.student.train()
        total, count = 0.0, 0
        for batch in self._loader(epoch):
            with self.placement.autocast():
                loss = self._loss(batch)
            self.optimizer.zero_grad(set_to_none=True)
            self.scaler.scale(loss).backward()
            self.scaler.unscale_(self.optimizer)
            torch.nn.utils.clip_grad_norm_(self.student.parameters(), self.config.grad_clip)
            self.scaler.step(self.optimizer)
            self.scaler.update()
            self.scheduler.step()
            total, count = total + loss.item(), count + 1
            bar.update(1)
            if count % 10 == 0:
                bar.set_postfix(loss=f"{total / count:.4f}")
        total, count = distributed.all_sum([total, count])
        return total / max(count, 1)

    def _loader(self, epoch: int) -> DataLoader:
        on_gpu = self.placement.device.type == "cuda"
        workers = self.config.workers if self.config.workers is not None else (2 if on_gpu else 0)
        # NOTE: batch_size=None: each sampler item is a whole batch's rows, which TrainBatches turns into tensors
        return DataLoader(self.data, batch_size=None, sampler=self._batches(epoch), num_workers=workers,
                          pin_memory=on_gpu, prefetch_factor=4 if workers else None)  # fmt: skip

    def _batches(self, epoch: int, pool: int = 50) -> list[np.ndarray]:
        """This rank's share of this epoch's batches: shuffled, but texts of similar length batched together.

        NOTE: random batches pad every text to the longest of 32-256 random ones; sorting within
        pools of `pool` batches cuts the padded tokens (and a transformer's step time) by about a third.
        Every rank draws the same global batches and takes its own slice of each.
        """
        rng = np.random.default_rng(self.config.seed + epoch)
        order = rng.permutation(len(self.train_index))
        size = self.config.batch_size
        batches = []
        for first in range(0, len(order), size * pool):
            chunk = order[first : first + size * pool]
            chunk = chunk[np.argsort(self.lengths[self.train_index[chunk]], kind="stable")]
            batches.extend(chunk[i : i + size] for i in range(0, len(chunk), size))
        batches = [batches[i] for i in rng.permutation(len(batches))]
        world = self.group.world
        # NOTE: a last batch too small to give every rank a text is left out on every rank alike
        return [self.train_index[np.array_split(b, world)[self.group.rank]] for b in batches if len(b) >= world]

    def _loss(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        device = self.placement.device
        on_gpu = device.type == "cuda"
        input_ids = batch["input_ids"].to(device, non_blocking=on_gpu)
        mask = batch["attention_mask"].to(device, non_blocking=on_gpu)
        teacher = batch["teacher"].to(device, non_blocking=on_gpu)
        if self.config.token_loss_weight <= 0 and self.config.hidden_loss_weight <= 0:
            return self.sentence_loss(self.step(input_ids, mask, "sentence").float(), teacher)
        keep = mask.bool()
        online = None  # the teacher's token vectors, where this step already ran the teacher
        if self.config.hidden_loss_weight > 0:
            tokens, sentence, kept = self.step(input_ids, mask, "hidden")
            layers = self.teacher.hidden_states_on_device(input_ids, mask)  # [i + 1]: layer i; [-1]: token vectors
            layer_losses = [self.loss(h.float()[keep], layers[layer + 1][keep]) for h, layer in kept]
            hidden_loss = sum(layer_losses) / max(len(layer_losses), 1)
            online = layers[-1]
        else:
            tokens, sentence = self.step(input_ids, mask, "tokens")  # (batch, seq, token_dim), (batch, dim)
            hidden_loss = 0.0
        loss = self.sentence_loss(sentence.float(), teacher) + self.config.hidden_loss_weight * hidden_loss
        if self.config.token_loss_weight <= 0:
            return loss
        if self.token_targets is TokenTargets.ONLINE:
            token_targets = online if online is not None else self.teacher.token_vectors_on_device(input_ids, mask)
        else:
            token_targets = batch["token_targets"].to(device, non_blocking=on_gpu)
        return loss + self.config.token_loss_weight * self.loss(tokens.float()[keep], token_targets[keep])

    def _fresh_state(self) -> dict:
        return {"epoch": 0, "best": -1.0, "best_epoch": 0, "bad_epochs": 0, "best_state": None, "seconds": 0.0,
                "start": float("nan")}  # fmt: skip

    def _log(self, record: dict) -> None:
        if not self.group.is_main:
            return
        with open(self.work_dir / "metrics.jsonl", "a") as f:
            f.write(json.dumps({"student": self.student.kind, **record}) + "\n")
