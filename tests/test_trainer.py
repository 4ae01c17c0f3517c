import json
from pathlib import Path

import numpy as np
import pytest
import torch

from distill.data.corpus import Split, assign_splits
from distill.data.targets import Targets, build_targets
from distill.errors import DistillError
from distill.teacher.model import Teacher
from distill.training.trainer import TrainConfig, Trainer, fidelity
from students.static import StaticStudent


@pytest.fixture()
def targets(tiny_teacher: Teacher, corpus: list[str], tmp_path: Path) -> Targets:
    return build_targets(tiny_teacher, corpus, assign_splits(corpus, 0.2, 0.2), tmp_path / "cache")


def _valid(student: StaticStudent, targets: Targets) -> float:
    index = targets.indices(Split.VALID)
    return fidelity(student, student.token_ids([targets.texts[i] for i in index]), targets.sentence_vectors[index])


def test_training_raises_validation_fidelity_and_logs_metrics(
    tiny_teacher: Teacher, targets: Targets, tmp_path: Path
) -> None:
    student = StaticStudent.from_teacher(tiny_teacher, targets, init="vocab")
    before = _valid(student, targets)
    result = Trainer(student, targets, TrainConfig(epochs=6, lr=2e-2, batch_size=32, patience=6), tmp_path).train()
    assert result.best_fidelity > before + 0.01
    assert _valid(student, targets) == pytest.approx(result.best_fidelity, abs=1e-6)  # best weights are kept
    lines = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [x["epoch"] for x in lines] == list(range(7)) and all("valid_fidelity" in x for x in lines)
    assert lines[0]["valid_fidelity"] == pytest.approx(before, abs=1e-6) == pytest.approx(result.start_fidelity)


def _interrupted(trainer: Trainer, after: int) -> None:
    """Train until `after` epochs are done, then stop as Ctrl+C would."""
    run_epoch = trainer._epoch

    def epoch(number: int, bar: object) -> float:
        if number == after:
            raise KeyboardInterrupt
        return run_epoch(number, bar)

    trainer._epoch = epoch  # type: ignore[method-assign]
    with pytest.raises(KeyboardInterrupt):
        trainer.train()


def test_resume_goes_on_from_the_checkpoint(tiny_teacher: Teacher, targets: Targets, tmp_path: Path) -> None:
    """An interrupted run resumed in a new process ends with the weights of a run never interrupted."""
    config = TrainConfig(epochs=4, lr=2e-2, batch_size=32, patience=4)
    whole = StaticStudent.from_teacher(tiny_teacher, targets, init="vocab")
    expected = Trainer(whole, targets, config, tmp_path / "a").train()
    _interrupted(Trainer(StaticStudent.from_teacher(tiny_teacher, targets, init="vocab"), targets, config,
                         tmp_path / "b"), after=2)  # fmt: skip
    assert (tmp_path / "b" / "checkpoint.pt").is_file()
    resumed = StaticStudent.from_teacher(tiny_teacher, targets, init="vocab")  # a new process builds it again
    result = Trainer(resumed, targets, config, tmp_path / "b").train(resume=True)
    assert result.epochs_run == 4 and result.best_fidelity == pytest.approx(expected.best_fidelity, abs=1e-6)
    epochs = [json.loads(x)["epoch"] for x in (tmp_path / "b" / "metrics.jsonl").read_text().splitlines()]
    assert epochs == [0, 1, 2, 3, 4]
    for name, tensor in whole.state_dict().items():
        torch.testing.assert_close(resumed.state_dict()[name], tensor, atol=1e-6, rtol=0)


def _bytes(tensors: dict[str, torch.Tensor]) -> int:
    return sum(t.numel() * t.element_size() for t in tensors.values())


def test_a_finished_students_checkpoint_is_small_and_resumes_as_finished(
    tiny_teacher: Teacher, targets: Targets, tmp_path: Path
) -> None:
    """Once trained, the checkpoint keeps the trained weights alone (no optimizer state, no second copy, no buffers),
    less than the student's whole state; a resumed run keeps the student as it ended, with no epoch more."""
    config = TrainConfig(epochs=2, lr=2e-2, batch_size=32, patience=2)
    student = StaticStudent.from_teacher(tiny_teacher, targets)  # trained through its factors, over a fixed base
    result = Trainer(student, targets, config, tmp_path).train()
    checkpoint = tmp_path / "checkpoint.pt"
    trained = {n: p for n, p in student.named_parameters() if n.startswith("factors.")}
    assert _bytes(trained) < checkpoint.stat().st_size < _bytes(trained) + 100_000 < _bytes(student.state_dict())
    assert "optimizer" not in torch.load(checkpoint, weights_only=False)
    again = StaticStudent.from_teacher(tiny_teacher, targets)
    resumed = Trainer(again, targets, TrainConfig(**{**config.__dict__, "epochs": 5}), tmp_path).train(resume=True)
    assert (resumed.epochs_run, resumed.best_fidelity) == (result.epochs_run, result.best_fidelity)
    assert len((tmp_path / "metrics.jsonl").read_text().splitlines()) == 1 + result.epochs_run  # no epoch more
    texts = ["a quick test", "another sentence here"]
    np.testing.assert_allclose(again.encode(texts), student.encode(texts), atol=1e-6)


def test_a_student_never_ends_worse_than_it_started(tiny_teacher: Teacher, targets: Targets, tmp_path: Path) -> None:
    """A learning rate far too high wrecks every epoch: the student comes back as it was built, and says so."""
    from distill.training.pipeline import student_warnings

    student = StaticStudent.from_teacher(tiny_teacher, targets)
    before = _valid(student, targets)
    result = Trainer(student, targets, TrainConfig(epochs=2, lr=50.0, batch_size=32, patience=2), tmp_path).train()
    assert result.best_epoch == 0 and result.start_fidelity == pytest.approx(before)
    assert _valid(student, targets) == pytest.approx(before, abs=1e-6)
    (line,) = [w for w in student_warnings("static", result) if "starting point" in w]
    assert "--lr" in line


@pytest.mark.parametrize("bad", [{"epochs": 0}, {"batch_size": 0}, {"batch_size": -3}, {"lr": 0}])
def test_bad_training_settings_are_user_errors(bad: dict) -> None:
    with pytest.raises(DistillError):
        TrainConfig(**bad)


def test_short_runs_warm_up_for_a_third_and_long_runs_keep_their_fraction() -> None:
    from distill.training.trainer import warmup_steps

    assert warmup_steps(0.05, 10) == 3  # 1 epoch of a few thousand sentences: not one full-size step at once
    assert warmup_steps(0.05, 60) == 20
    assert warmup_steps(0.05, 1108) == 55  # the default transformer run, as before
    assert warmup_steps(0.0, 1) == 1


def test_data_loading_workers_give_the_same_training(tiny_teacher: Teacher, targets: Targets, tmp_path: Path) -> None:
    """Batches prepared in worker processes (the targets and tokenizer pickled to them) train exactly alike."""
    results = []
    for workers in (0, 2):
        student = StaticStudent.from_teacher(tiny_teacher, targets, init="vocab")
        config = TrainConfig(epochs=2, lr=2e-2, batch_size=32, workers=workers)
        results.append(Trainer(student, targets, config, tmp_path / str(workers)).train().best_fidelity)
    assert results[0] == pytest.approx(results[1], abs=1e-6)
