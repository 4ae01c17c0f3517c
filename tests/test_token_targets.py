"""`--token-targets store|online|none|auto`: the same token loss from disk or from the teacher, or none at all."""

import json
from pathlib import Path

import numpy as np
import pytest

from distill.data.corpus import assign_splits
from distill.data.targets import STORE_LIMIT, Targets, TokenTargets, build_targets, choose_token_targets
from distill.errors import DistillError
from distill.teacher.model import Teacher
from distill.training.config import RunConfig
from distill.training.pipeline import run_from_model
from distill.training.trainer import TrainConfig, Trainer
from students.static import StaticStudent
from students.transformer import TransformerStudent

GIB = 2**30


def _targets(teacher: Teacher, corpus: list[str], cache: Path, token_vectors: bool) -> Targets:
    return build_targets(teacher, corpus, assign_splits(corpus), cache, token_vectors=token_vectors)


def test_online_token_targets_train_as_the_stored_ones(
    tiny_teacher: Teacher, corpus: list[str], tmp_path: Path
) -> None:
    stored = _targets(tiny_teacher, corpus, tmp_path, token_vectors=True)
    bare = _targets(tiny_teacher, corpus, tmp_path, token_vectors=False)
    assert bare.root != stored.root and bare.token_vectors is None and not (bare.root / "token_vectors.npy").exists()
    assert np.array_equal(bare.token_ids, stored.token_ids)  # token ids are kept in every mode
    config = TrainConfig(**{**TransformerStudent.default_training, "epochs": 2, "batch_size": 16})
    results = {}
    for mode, targets in [(TokenTargets.STORE, stored), (TokenTargets.ONLINE, bare)]:
        student = TransformerStudent.from_teacher(tiny_teacher, targets, layers=[1])
        trainer = Trainer(student, targets, config, tmp_path / mode.value, token_targets=mode, teacher=tiny_teacher)
        results[mode] = trainer.train()
    store, online = results[TokenTargets.STORE], results[TokenTargets.ONLINE]
    assert store.best_fidelity > store.start_fidelity
    assert online.best_fidelity == pytest.approx(store.best_fidelity, abs=2e-3)  # float16 storage is all that differs
    with pytest.raises(DistillError, match="use --token-targets store or online"):
        Trainer(TransformerStudent.from_teacher(tiny_teacher, bare, layers=[1]), bare, config, tmp_path / "x",
                token_targets=TokenTargets.NONE)  # fmt: skip


def test_static_table_in_context_from_the_teacher_equals_the_stored_one(
    tiny_teacher: Teacher, corpus: list[str], tmp_path: Path
) -> None:
    stored = _targets(tiny_teacher, corpus, tmp_path, token_vectors=True)
    bare = _targets(tiny_teacher, corpus, tmp_path, token_vectors=False)
    bare.token_mode = TokenTargets.ONLINE
    a = StaticStudent.from_teacher(tiny_teacher, stored, factored=False).embedding.weight.detach().numpy()
    b = StaticStudent.from_teacher(tiny_teacher, bare, factored=False).embedding.weight.detach().numpy()
    assert np.abs(a - b).max() < 2e-3
    bare.token_mode = TokenTargets.NONE
    alone = StaticStudent.from_teacher(tiny_teacher, bare, factored=False).embedding.weight.detach().numpy()
    np.testing.assert_allclose(alone, np.asarray(bare.vocab_vectors), atol=1e-6)


def test_none_trains_without_the_token_loss_and_says_so(
    tiny_teacher: Teacher, corpus: list[str], tmp_path: Path
) -> None:
    config = RunConfig(output=str(tmp_path / "run"), cache_dir=str(tmp_path / "cache"), token_targets="none",
                       train={"epochs": 1}, students={"static": {}, "transformer": {"layers": [1]}})  # fmt: skip
    summary = run_from_model(tiny_teacher, corpus, config)
    assert summary.token_targets == "none"
    assert not list((tmp_path / "cache").glob("targets-*/token_vectors.npy"))
    static, transformer = summary.students
    assert not static.warnings
    assert any("without its token loss" in line for line in transformer.warnings)
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["token_targets"] == "none"


def test_auto_stores_while_the_vectors_fit_and_says_why() -> None:
    def choose(**kwargs):
        settings = {"needed": True, "device_type": "cpu", "stored_bytes": 1 * GIB, "free_bytes": 100 * GIB}
        return choose_token_targets("auto", **{**settings, **kwargs})

    assert choose()[0] is TokenTargets.STORE
    assert choose(needed=False)[0] is TokenTargets.NONE
    assert choose(stored_bytes=STORE_LIMIT + 1, free_bytes=1000 * GIB, device_type="cuda")[0] is TokenTargets.ONLINE
    mode, why = choose(stored_bytes=60 * GIB, free_bytes=100 * GIB)  # over half the free disk, on the CPU
    assert mode is TokenTargets.NONE and "--token-targets online" in why
    assert choose_token_targets("online", needed=False, device_type="cpu", stored_bytes=0, free_bytes=0) == (
        TokenTargets.ONLINE, "as asked",
    )  # fmt: skip


def test_the_reason_gives_a_small_size_in_mb_not_as_0_gib() -> None:
    mode, why = choose_token_targets("auto", needed=True, device_type="cpu", stored_bytes=40 * 2**20,
                                     free_bytes=100 * GIB)  # fmt: skip
    assert mode is TokenTargets.STORE and "about 40 MB on disk" in why
    _, why = choose_token_targets("auto", needed=True, device_type="cpu", stored_bytes=60 * GIB, free_bytes=100 * GIB)
    assert "about 60.0 GiB" in why and "over 50.0 GiB" in why


def test_token_targets_setting_is_checked() -> None:
    with pytest.raises(DistillError, match="token-targets must be one of auto, store, online, none"):
        RunConfig(token_targets="disk")
    assert RunConfig(token_targets=True).token_targets == "store"  # the true / false of earlier configs
    assert RunConfig(students={"static": {"init": "vocab"}}).uses_token_vectors() is False
    assert RunConfig(students={"transformer": {}}).uses_token_vectors() is True
