import json
from pathlib import Path

import numpy as np

import students
from distill.teacher.model import Teacher
from distill.training.config import RunConfig
from distill.training.pipeline import run_from_model
from tests.conftest import SENTENCES


def test_run_from_model_trains_saves_and_summarises(tiny_teacher: Teacher, corpus: list[str], tmp_path: Path) -> None:
    config = RunConfig(output=str(tmp_path / "run"), cache_dir=str(tmp_path / "cache"), train={"epochs": 2})
    summary = run_from_model(tiny_teacher, corpus, config)
    (static,) = summary.students
    assert static.name == "static" and static.epochs == 2 and -1.0 <= static.test_fidelity <= 1.0
    assert set(summary.stage_seconds) == {"targets", "train static"}
    saved = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert saved["students"][0]["test_fidelity"] == static.test_fidelity
    loaded = students.load(static.path)
    assert loaded.encode(SENTENCES).shape == (len(SENTENCES), tiny_teacher.dim)
    assert np.isfinite(loaded.encode(SENTENCES)).all()


def test_a_named_student_of_a_given_kind_trains_beside_its_kind(tmp_path: Path) -> None:
    from distill.training.config import build_config

    config = build_config(
        {"students": ["static", "wide"], "wide": {"kind": "static", "init": "vocab", "epochs": 1}}, {}
    )
    assert config.kind_of("wide") == "static" and config.kind_of("static") == "static"
    assert config.student_options("wide") == {"init": "vocab"}
    assert config.train_config_for("wide", {}).epochs == 1


def test_a_student_named_with_a_dash_keeps_its_settings() -> None:
    from distill.training.config import build_config

    config = build_config({"students": ["static-wide"], "static-wide": {"kind": "static", "grad-clip": 0.5}},
                          {"max-length": 64})  # fmt: skip
    assert config.kind_of("static-wide") == "static" and config.max_length == 64
    assert config.train_config_for("static-wide", {}).grad_clip == 0.5


def test_both_recipes_read_into_valid_runs() -> None:
    """`make distill` and `make quality` read their config files: a typo in either is caught here, not after
    an hour of training. The quality recipe differs from the default where it says it does."""
    from distill.training.config import build_config, read_toml

    root = Path(__file__).parent.parent / "configs"
    default = build_config(read_toml(root / "default.toml"), {})
    quality = build_config(read_toml(root / "quality.toml"), {})
    assert default.output == "runs/default" and quality.output == "runs/quality"
    assert set(default.augment) < set(quality.augment) and {"questions", "passages"} <= set(quality.augment)
    assert quality.passages == "cut" and default.passages == "whole"
    assert quality.train_config_for("transformer", {}).hidden_loss_weight > 0
    assert default.train_config_for("transformer", {}).hidden_loss_weight == 0


def test_no_config_is_the_default_recipe_that_make_distill_trains() -> None:
    """`distill run` and `distill(...)` with no config file train what configs/default.toml (`make distill`) says."""
    from distill.training.config import build_config, read_toml, recipe_values

    default = build_config(recipe_values(None), {})
    assert default == build_config(read_toml(Path(__file__).parent.parent / "configs" / "default.toml"), {})
    assert list(default.students) == ["static", "transformer", "tokengen"] and default.augment == [
        "spans",
        "words",
        "bags",
    ]
    assert default.train_config_for("static", {}).epochs == 6
    # a flag given wins over a student's table in the recipe too: --epochs 1 is one epoch for every student
    assert build_config(recipe_values(None), {"epochs": 1}).train_config_for("static", {}).epochs == 1
    assert list(build_config(recipe_values(None), {"students": "static"}).students) == ["static"]
