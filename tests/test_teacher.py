"""The teacher's maths: pooling as sentence-transformers pools, the vocabulary template, the fingerprint."""

from pathlib import Path

import numpy as np
import onnxruntime
import pytest
import torch
from sentence_transformers.sentence_transformer.modules import Pooling as STPooling
from tokenizers import Tokenizer, models, pre_tokenizers
from torch import nn
from transformers import PreTrainedTokenizerFast

from distill.errors import DistillError
from distill.teacher.model import DEFAULT_TEACHER, Dense, Pooling, Teacher, pool, resolve_teacher
from tests.conftest import SENTENCES
from tests.families import tiny_teacher as family_teacher

# sentence-transformers' own name for each of our pooling modes.
ST_MODE = {
    Pooling.MEAN: "mean",
    Pooling.CLS: "cls",
    Pooling.MAX: "max",
    Pooling.LASTTOKEN: "lasttoken",
    Pooling.WEIGHTEDMEAN: "weightedmean",
    Pooling.MEAN_SQRT_LEN: "mean_sqrt_len_tokens",
}


def right_padded_batch(lengths: list[int], dim: int = 8, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Random token vectors (batch, seq, dim), padding positions included, and a right-padded mask (batch, seq)."""
    generator = torch.Generator().manual_seed(seed)
    tokens = torch.randn(len(lengths), max(lengths), dim, generator=generator) * 3
    mask = (torch.arange(max(lengths))[None, :] < torch.tensor(lengths)[:, None]).long()
    return tokens, mask


@pytest.fixture(scope="module")
def roberta_teacher() -> Teacher:
    return family_teacher("roberta", SENTENCES)


@pytest.mark.parametrize("pooling", list(Pooling))
def test_every_pooling_mode_equals_sentence_transformers(pooling: Pooling) -> None:
    tokens, mask = right_padded_batch([7, 4, 1, 6])
    st_pooling = STPooling(8, pooling_mode=ST_MODE[pooling])
    expected = st_pooling({"token_embeddings": tokens, "attention_mask": mask})["sentence_embedding"]
    torch.testing.assert_close(pool(tokens, mask, pooling), expected, rtol=0, atol=1e-6)


def test_pooling_modes_use_only_unmasked_positions() -> None:
    tokens = torch.tensor([[[1.0, 2.0], [3.0, 4.0], [100.0, -100.0]]])  # (1, 3, 2)
    mask = torch.tensor([[1, 1, 0]])
    assert pool(tokens, mask, Pooling.MEAN).tolist() == [[2.0, 3.0]]
    assert pool(tokens, mask, Pooling.MAX).tolist() == [[3.0, 4.0]]
    assert pool(tokens, mask, Pooling.CLS).tolist() == [[1.0, 2.0]]
    assert pool(tokens, mask, Pooling.LASTTOKEN).tolist() == [[3.0, 4.0]]
    weighted = pool(tokens, mask, Pooling.WEIGHTEDMEAN)  # weights 1 and 2
    torch.testing.assert_close(weighted, torch.tensor([[(1 + 2 * 3) / 3, (2 + 2 * 4) / 3]]))


class _Pool(nn.Module):
    def __init__(self, pooling: Pooling) -> None:
        super().__init__()
        self.pooling = pooling

    def forward(self, tokens: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return pool(tokens, mask, self.pooling)


@pytest.mark.parametrize("pooling", list(Pooling))
def test_every_pooling_mode_traces_to_onnx(pooling: Pooling, tmp_path: Path) -> None:
    path = tmp_path / "pool.onnx"
    traced_on = right_padded_batch([3, 2], seed=1)  # NOTE: other shapes than the run, so none is baked in
    torch.onnx.export(_Pool(pooling), traced_on, str(path), dynamo=False, opset_version=17,
                      input_names=["tokens", "mask"], output_names=["sentence"],
                      dynamic_axes={"tokens": {0: "batch", 1: "seq"}, "mask": {0: "batch", 1: "seq"}})  # fmt: skip
    tokens, mask = right_padded_batch([7, 4, 1, 6])
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    feed = {"tokens": tokens.numpy(), "mask": mask.numpy()}
    (got,) = session.run(None, {i.name: feed[i.name] for i in session.get_inputs()})  # CLS pooling needs no mask
    np.testing.assert_allclose(got, pool(tokens, mask, pooling).numpy(), rtol=0, atol=1e-5)


def test_sentence_vectors_keep_input_order_despite_length_sorting(tiny_teacher: Teacher) -> None:
    batched = tiny_teacher.sentence_vectors(SENTENCES, batch_size=4)
    one_by_one = np.stack([tiny_teacher.sentence_vectors([s])[0] for s in SENTENCES])
    np.testing.assert_allclose(batched, one_by_one, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(batched, axis=1), 1.0, atol=1e-5)


def test_prompt_goes_before_every_text_but_not_before_vocabulary_tokens(roberta_teacher: Teacher) -> None:
    prompted = Teacher(roberta_teacher.model, roberta_teacher.tokenizer, normalize=True, max_length=64,
                       prompt="query: ")  # fmt: skip
    expected = roberta_teacher.tokenize(["query: " + s for s in SENTENCES[:3]])["input_ids"]
    assert prompted.tokenize(SENTENCES[:3])["input_ids"].tolist() == expected.tolist()
    assert not np.allclose(prompted.sentence_vectors(SENTENCES[:3]), roberta_teacher.sentence_vectors(SENTENCES[:3]))
    np.testing.assert_array_equal(prompted.vocab_vectors(), roberta_teacher.vocab_vectors())


def test_dense_modules_follow_pooling_and_set_the_sentence_dimension(roberta_teacher: Teacher) -> None:
    torch.manual_seed(0)
    dense = nn.Sequential(Dense(32, 24, activation=nn.Tanh()), Dense(24, 16))
    teacher = Teacher(roberta_teacher.model, roberta_teacher.tokenizer, normalize=True, max_length=64, dense=dense)
    batch = teacher.forward(SENTENCES[:3])
    assert (teacher.dim, teacher.token_dim, batch.token_vectors.shape[-1]) == (16, 32, 32)
    expected = nn.functional.normalize(dense(pool(batch.token_vectors, batch.attention_mask, Pooling.MEAN)), dim=-1)
    torch.testing.assert_close(batch.sentence_vectors, expected)
    assert teacher.vocab_vectors().shape == (teacher.vocab_size, 16)


def test_single_token_template_for_bert_roberta_and_bare_tokenizers(
    tiny_teacher: Teacher, roberta_teacher: Teacher
) -> None:
    assert tiny_teacher.single_token_template() == ([101], [102])  # [CLS] ... [SEP]
    tokenizer = roberta_teacher.tokenizer
    assert roberta_teacher.single_token_template() == ([tokenizer.bos_token_id], [tokenizer.eos_token_id])
    assert tokenizer.convert_ids_to_tokens([tokenizer.bos_token_id, tokenizer.eos_token_id]) == ["<s>", "</s>"]
    bare = Tokenizer(models.WordLevel({"[UNK]": 0, "the": 1, "fox": 2}, unk_token="[UNK]"))
    bare.pre_tokenizer = pre_tokenizers.Whitespace()
    teacher = Teacher(tiny_teacher.model, PreTrainedTokenizerFast(tokenizer_object=bare, unk_token="[UNK]"))
    assert teacher.single_token_template() == ([], [])


def test_vocab_vectors_are_each_token_between_the_tokenizers_own_special_tokens(roberta_teacher: Teacher) -> None:
    vectors = roberta_teacher.vocab_vectors(batch_size=64)
    assert vectors.shape == (roberta_teacher.vocab_size, roberta_teacher.dim)
    word = roberta_teacher.tokenizer.convert_tokens_to_ids("Ġriver")
    ids = torch.tensor([[roberta_teacher.tokenizer.bos_token_id, word, roberta_teacher.tokenizer.eos_token_id]])
    alone = roberta_teacher.forward_ids(ids, torch.ones_like(ids))
    np.testing.assert_allclose(vectors[word], alone.sentence_vectors[0].numpy(), atol=1e-5)


def test_fingerprint_changes_with_everything_that_changes_vectors(tiny_teacher: Teacher) -> None:
    def variant(**changes: object) -> str:
        settings = {"pooling": Pooling.MEAN, "normalize": True, "max_length": 64, "name": "tiny"} | changes
        return Teacher(tiny_teacher.model, tiny_teacher.tokenizer, **settings).fingerprint

    torch.manual_seed(0)
    dense_a, dense_b = nn.Sequential(Dense(32, 8)), nn.Sequential(Dense(32, 8))
    prints = [variant(), variant(pooling=Pooling.CLS), variant(normalize=False), variant(max_length=32),
              variant(prompt="query: "), variant(dense=dense_a), variant(dense=dense_b)]  # fmt: skip
    assert len(set(prints)) == len(prints)
    assert variant() == tiny_teacher.fingerprint and variant(name="renamed") == tiny_teacher.fingerprint
    other = Teacher(type(tiny_teacher.model)(tiny_teacher.model.config), tiny_teacher.tokenizer, max_length=64)
    assert other.fingerprint != tiny_teacher.fingerprint


def test_packaged_teacher_config_is_read(real_teacher: Teacher) -> None:
    assert (real_teacher.pooling, real_teacher.normalize, real_teacher.max_length) == (Pooling.MEAN, True, 256)
    assert (real_teacher.dim, real_teacher.token_dim, real_teacher.dense, real_teacher.prompt) == (384, 384, None, "")
    assert resolve_teacher("all-MiniLM-L6-v2").is_dir()


def test_packaged_teacher_loads_without_transformers_report(capfd: pytest.CaptureFixture[str]) -> None:
    Teacher.load(DEFAULT_TEACHER)
    out, err = capfd.readouterr()
    assert "LOAD REPORT" not in out + err and "Loading weights" not in out + err
    assert out + err == ""


@pytest.mark.parametrize("make", ["missing", "not_a_model"])
def test_bad_teacher_paths_are_user_errors(tmp_path: Path, make: str) -> None:
    path = tmp_path / "teacher"
    if make == "not_a_model":
        path.mkdir()
        (path / "notes.txt").write_text("hello")
    with pytest.raises(DistillError, match="teacher"):
        Teacher.load(str(path) if make == "not_a_model" else "./no/such/teacher")
