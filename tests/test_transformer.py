import logging
from pathlib import Path

import numpy as np
import pytest
import torch
from sentence_transformers import SentenceTransformer

import students
from distill.data.corpus import Split, assign_splits
from distill.data.targets import Targets, build_targets
from distill.errors import DistillError
from distill.teacher.model import Teacher
from distill.training.trainer import TrainConfig, Trainer, fidelity, token_fidelity
from students.transformer import TransformerStudent
from tests.conftest import SENTENCES, far_off_transformer_student


@pytest.fixture()
def targets(tiny_teacher: Teacher, corpus: list[str], tmp_path: Path) -> Targets:
    return build_targets(tiny_teacher, corpus, assign_splits(corpus), tmp_path / "cache")


def test_all_layers_copied_reproduce_the_teacher(tiny_teacher: Teacher, targets: Targets) -> None:
    student = TransformerStudent.from_teacher(tiny_teacher, targets, layers=[0, 1])
    teacher = tiny_teacher.sentence_vectors(SENTENCES)
    np.testing.assert_allclose(student.encode(SENTENCES), teacher, atol=1e-5)
    assert token_fidelity(student, targets, targets.indices(Split.TEST)) == pytest.approx(1.0, abs=1e-4)


def test_only_a_student_of_fewer_layers_is_logged_as_one(
    tiny_teacher: Teacher, targets: Targets, caplog: pytest.LogCaptureFixture
) -> None:
    """The teacher copied whole (as eval exports it to ONNX) is no student: no "transformer student" line."""
    with caplog.at_level(logging.INFO, logger="students.transformer"):
        TransformerStudent.from_teacher(tiny_teacher, targets, layers=[0, 1])
        assert not [r for r in caplog.records if r.levelno >= logging.INFO and "student" in r.getMessage()]
        TransformerStudent.from_teacher(tiny_teacher, targets, layers=[1])
    assert [r.getMessage() for r in caplog.records] == ["transformer student: layers [1] of the teacher's 2 (bert), "
                                                        "hidden size 32"]  # fmt: skip


def test_dropping_a_layer_changes_the_vectors(tiny_teacher: Teacher, targets: Targets) -> None:
    student = TransformerStudent.from_teacher(tiny_teacher, targets, layers=[1])
    assert student.encoder.config.num_hidden_layers == 1
    assert np.abs(student.encode(SENTENCES) - tiny_teacher.sentence_vectors(SENTENCES)).max() > 1e-3


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"layers": [0, 7]}, "layer 7 is not in the teacher"),
        ({"hidden_size": 30, "heads": 4}, "not divisible by 4 heads"),
        ({"hidden_size": 64}, "wider than the teacher"),
    ],
)
def test_bad_shapes_are_clear_errors(tiny_teacher: Teacher, targets: Targets, options: dict, message: str) -> None:
    with pytest.raises(DistillError, match=message):
        TransformerStudent.from_teacher(tiny_teacher, targets, **options)


@pytest.mark.parametrize("options", [{"layers": [1]}, {"layers": [0, 1], "hidden_size": 16, "heads": 1}])
def test_save_reloads_exactly_and_as_a_sentence_transformer(
    tiny_teacher: Teacher, targets: Targets, tmp_path: Path, options: dict
) -> None:
    student = TransformerStudent.from_teacher(tiny_teacher, targets, **options)
    with torch.no_grad():  # move the weights off their copied values so the round trip is not trivially true
        for p in student.parameters():
            p.add_(0.01 * torch.randn_like(p))
    path = student.save(tmp_path / "transformer")
    loaded = students.load(path)
    assert isinstance(loaded, TransformerStudent) and loaded.config == student.config
    np.testing.assert_array_equal(loaded.encode(SENTENCES), student.encode(SENTENCES))
    st = SentenceTransformer(str(path), device="cpu")
    np.testing.assert_allclose(st.encode(SENTENCES), student.encode(SENTENCES), atol=1e-5)


def test_training_with_token_loss_moves_towards_the_teacher(
    tiny_teacher: Teacher, targets: Targets, tmp_path: Path
) -> None:
    student = far_off_transformer_student(tiny_teacher, targets)
    valid_ids = student.token_ids(targets.texts_of(Split.VALID))
    valid_vectors = np.asarray(targets.sentence_vectors[targets.indices(Split.VALID)])
    before = fidelity(student, valid_ids, valid_vectors)
    config = TrainConfig(**{**TransformerStudent.default_training, "epochs": 3, "lr": 3e-3})
    result = Trainer(student, targets, config, tmp_path / "work").train()
    assert before < 0.95 and result.best_fidelity > before + 0.02


def test_a_student_saved_by_another_version_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "student.json").write_text('{"kind": "transformer", "config": {"dim": 32, "bert": {}}}')
    with pytest.raises(DistillError, match="another version"):
        students.load(tmp_path)


def test_hidden_state_loss_pulls_each_kept_layer_towards_its_teacher_layer(
    tiny_teacher: Teacher, targets: Targets, tmp_path: Path
) -> None:
    """Layer 0 of a [0, 1] student starts perturbed: trained with the hidden-state loss, its output ends nearer
    the teacher's layer 0 than the same training without it leaves it."""
    batch = tiny_teacher.tokenize(SENTENCES)
    ids, mask = batch["input_ids"], batch["attention_mask"]

    def trained(weight: float) -> float:
        student = TransformerStudent.from_teacher(tiny_teacher, targets, layers=[0, 1])
        torch.manual_seed(0)
        with torch.no_grad():
            for p in student.encoder.encoder.layer[0].parameters():
                p.add_(torch.randn_like(p) * 0.3)
        config = TrainConfig(**{**TransformerStudent.default_training, "epochs": 3, "patience": 3, "lr": 1e-2,
                                "hidden_loss_weight": weight})  # fmt: skip
        Trainer(student, targets, config, tmp_path / str(weight), teacher=tiny_teacher).train()
        with torch.no_grad():
            ((mine, layer),) = student.forward_with_hidden(ids, mask)[2]
            theirs = tiny_teacher.hidden_states_on_device(ids, mask)[layer + 1]
        return torch.nn.functional.cosine_similarity(mine, theirs, dim=-1)[mask.bool()].mean().item()

    assert trained(1.0) > trained(0.0) + 0.03  # measured: 0.660 against 0.596
    # the hidden-state targets end with the token vectors, so an online token loss reuses that forward pass
    layers = tiny_teacher.hidden_states_on_device(ids, mask)
    assert len(layers) == 3  # the embeddings, layer 0, then layer 1's token vectors
    torch.testing.assert_close(layers[-1], tiny_teacher.token_vectors_on_device(ids, mask))
    student = TransformerStudent.from_teacher(tiny_teacher, targets, layers=[0, 1])
    with pytest.raises(DistillError, match="needs the transformer student and the teacher"):
        Trainer(student, targets, TrainConfig(hidden_loss_weight=1.0), tmp_path / "no-teacher")
