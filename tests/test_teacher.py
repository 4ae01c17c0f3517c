from pathlib import Path

import numpy as np
import pytest
import torch

from distill.errors import DistillError
from distill.teacher import Pooling, Teacher, pool, read_sentence_transformers_config, resolve_teacher
from tests.conftest import SENTENCES


def test_sentence_vectors_keep_input_order_despite_length_sorting(tiny_teacher: Teacher) -> None:
    batched = tiny_teacher.sentence_vectors(SENTENCES, batch_size=4)
    one_by_one = np.stack([tiny_teacher.sentence_vectors([s])[0] for s in SENTENCES])
    np.testing.assert_allclose(batched, one_by_one, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(batched, axis=1), 1.0, atol=1e-5)


def test_pooling_modes_use_only_unmasked_positions() -> None:
    tokens = torch.tensor([[[1.0, 2.0], [3.0, 4.0], [100.0, -100.0]]])  # (1, 3, 2)
    mask = torch.tensor([[1, 1, 0]])
    assert pool(tokens, mask, Pooling.MEAN).tolist() == [[2.0, 3.0]]
    assert pool(tokens, mask, Pooling.MAX).tolist() == [[3.0, 4.0]]
    assert pool(tokens, mask, Pooling.CLS).tolist() == [[1.0, 2.0]]


def test_vocab_vectors_are_each_token_run_alone(tiny_teacher: Teacher) -> None:
    vectors = tiny_teacher.vocab_vectors(batch_size=8192)
    assert vectors.shape == (tiny_teacher.vocab_size, tiny_teacher.dim)
    word = tiny_teacher.tokenizer.convert_tokens_to_ids("river")
    alone = tiny_teacher.forward_ids(torch.tensor([[101, word, 102]]), torch.ones(1, 3, dtype=torch.long))
    np.testing.assert_allclose(vectors[word], alone.sentence_vectors[0].numpy(), atol=1e-5)


def test_packaged_teacher_config_is_read(real_teacher: Teacher) -> None:
    assert (real_teacher.pooling, real_teacher.normalize, real_teacher.max_length) == (Pooling.MEAN, True, 256)
    assert real_teacher.dim == 384


def test_plain_bert_folder_falls_back_to_mean_pooling(tmp_path: Path) -> None:
    assert read_sentence_transformers_config(tmp_path) == (Pooling.MEAN, False, None)


def test_cls_pooling_read_from_sentence_transformers_files(tmp_path: Path) -> None:
    (tmp_path / "modules.json").write_text('[{"path": "1_Pooling", "type": "sentence_transformers.models.Pooling"}]')
    (tmp_path / "1_Pooling").mkdir()
    (tmp_path / "1_Pooling" / "config.json").write_text('{"pooling_mode_cls_token": true}')
    assert read_sentence_transformers_config(tmp_path)[:2] == (Pooling.CLS, False)


@pytest.mark.parametrize("make", ["missing", "not_a_model"])
def test_bad_teacher_paths_are_user_errors(tmp_path: Path, make: str) -> None:
    path = tmp_path / "teacher"
    if make == "not_a_model":
        path.mkdir()
        (path / "notes.txt").write_text("hello")
    with pytest.raises(DistillError, match="teacher"):
        Teacher.load(str(path) if make == "not_a_model" else "./no/such/teacher")


def test_fingerprint_changes_with_weights(tiny_teacher: Teacher) -> None:
    other = Teacher(
        type(tiny_teacher.model)(tiny_teacher.model.config), tiny_teacher.tokenizer, name="other", max_length=64
    )
    assert other.fingerprint != tiny_teacher.fingerprint
    assert resolve_teacher("all-MiniLM-L6-v2").is_dir()
