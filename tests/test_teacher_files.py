"""Loading a teacher from what its sentence-transformers files say, checked against sentence-transformers itself."""

import json
import logging
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file
from sentence_transformers import SentenceTransformer
from sentence_transformers.base.modules import Dense as STDense
from torch import nn

import distill.teacher.model
from distill.errors import DistillError
from distill.teacher.model import Dense, Pooling, Teacher, TeacherFiles, pooling_config, read_teacher_files
from tests.conftest import SENTENCES
from tests.families import save_teacher, tiny_teacher

TRANSFORMER = {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"}
POOLING = {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"}
DENSE = {"idx": 2, "name": "2", "path": "2_Dense", "type": "sentence_transformers.models.Dense"}
NORMALIZE = {"idx": 3, "name": "3", "path": "3_Normalize", "type": "sentence_transformers.models.Normalize"}


def write_json(path: Path, data: object) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))


def st_folder(path: Path, pooling: dict, modules: list[dict] | None = None) -> Path:
    """The sentence-transformers files alone (no model): enough for `read_teacher_files`."""
    write_json(path / "modules.json", modules or [TRANSFORMER, POOLING])
    write_json(path / "1_Pooling" / "config.json", pooling)
    return path


def teacher_folder(path: Path, family: str, pooling: Pooling, *, settings: dict | None = None) -> Path:
    """A tiny teacher of `family` saved as Transformer, Pooling, Dense (Tanh, 32 -> 16), Normalize."""
    save_teacher(
        tiny_teacher(family, SENTENCES, pooling=pooling), path, modules=[TRANSFORMER, POOLING, DENSE, NORMALIZE]
    )
    torch.manual_seed(1)
    Dense(32, 16, activation=nn.Tanh()).save(path / "2_Dense")
    write_json(path / "config_sentence_transformers.json", settings or {})
    return path


@pytest.mark.parametrize(
    ("family", "pooling"),
    [("roberta", Pooling.WEIGHTEDMEAN), ("xlm-roberta", Pooling.MEAN_SQRT_LEN), ("distilbert", Pooling.MAX),
     ("mpnet", Pooling.MEAN), ("bert", Pooling.CLS), ("modernbert", Pooling.LASTTOKEN)],
)  # fmt: skip
def test_teacher_folder_gives_the_vectors_sentence_transformers_gives(
    family: str, pooling: Pooling, tmp_path: Path
) -> None:
    prompts = {"prompts": {"query": "query: ", "document": ""}, "default_prompt_name": None}
    path = teacher_folder(tmp_path / family, family, pooling, settings=prompts)
    teacher = Teacher.load(str(path), prompt_name="query")
    assert (teacher.pooling, teacher.normalize, teacher.max_length, teacher.prompt) == (pooling, True, 64, "query: ")
    assert (teacher.dim, teacher.token_dim, len(teacher.dense)) == (16, 32, 1)
    assert teacher.dense[0].activation_function == "torch.nn.modules.activation.Tanh"
    st = SentenceTransformer(str(path), device="cpu")
    expected = st.encode(SENTENCES, prompt_name="query", batch_size=5)
    np.testing.assert_allclose(teacher.sentence_vectors(SENTENCES, batch_size=5), expected, rtol=0, atol=1e-5)


def test_default_prompt_and_lowercasing_follow_the_teachers_files(tmp_path: Path) -> None:
    path = teacher_folder(tmp_path, "roberta", Pooling.MEAN, settings={"prompts": {"query": "Query: "},
                                                                        "default_prompt_name": "query"})  # fmt: skip
    write_json(path / "sentence_bert_config.json", {"max_seq_length": 48, "do_lower_case": True})
    teacher = Teacher.load(str(path))
    assert (teacher.prompt, teacher.max_length) == ("Query: ", 48)
    assert teacher.tokenize(["The CAT"])["input_ids"].tolist() == teacher.tokenize(["the cat"])["input_ids"].tolist()
    expected = SentenceTransformer(str(path), device="cpu").encode(SENTENCES)  # its default prompt, lowercased
    np.testing.assert_allclose(teacher.sentence_vectors(SENTENCES), expected, rtol=0, atol=1e-5)
    assert Teacher.load(str(path), prompt_text="", max_length=20).prompt == ""


def test_transformer_module_in_a_subfolder(tmp_path: Path) -> None:
    teacher = tiny_teacher("bert", SENTENCES)
    teacher.model.save_pretrained(tmp_path / "0_Transformer")
    teacher.tokenizer.save_pretrained(tmp_path / "0_Transformer")
    st_folder(tmp_path, pooling_config(Pooling.CLS, 32), [{**TRANSFORMER, "path": "0_Transformer"}, POOLING])
    expected = SentenceTransformer(str(tmp_path), device="cpu").encode(SENTENCES[:3])
    np.testing.assert_allclose(Teacher.load(str(tmp_path)).sentence_vectors(SENTENCES[:3]), expected, atol=1e-5)


@pytest.mark.parametrize(
    ("config", "expected"),
    [({"pooling_mode_cls_token": True, "pooling_mode_mean_tokens": False}, Pooling.CLS),
     ({"word_embedding_dimension": 32, "pooling_mode_weightedmean_tokens": True}, Pooling.WEIGHTEDMEAN),
     ({"pooling_mode_mean_sqrt_len_tokens": True}, Pooling.MEAN_SQRT_LEN),
     ({"word_embedding_dimension": 32}, Pooling.MEAN),  # no mode set: sentence-transformers pools the mean
     ({"embedding_dimension": 32, "pooling_mode": "lasttoken"}, Pooling.LASTTOKEN),
     ({"pooling_mode": "mean_sqrt_len_tokens"}, Pooling.MEAN_SQRT_LEN),
     ({"pooling_mode": ["max"], "pooling_mode_cls_token": True}, Pooling.MAX)],  # the new key wins
)  # fmt: skip
def test_legacy_and_new_pooling_keys_are_read(config: dict, expected: Pooling, tmp_path: Path) -> None:
    assert read_teacher_files(st_folder(tmp_path, config)).pooling is expected


def test_a_plain_transformers_folder_means_mean_pooling(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO):
        assert read_teacher_files(tmp_path) == TeacherFiles(tmp_path)
    assert "no modules.json" in caplog.text


@pytest.mark.parametrize(
    ("modules", "pooling", "message"),
    [([TRANSFORMER, POOLING, {"path": "2_LayerNorm", "type": "sentence_transformers.models.LayerNorm"}], {},
      r"'2_LayerNorm' is a 'sentence_transformers.models.LayerNorm'.*understands .*Transformer, Pooling, Dense"),
     ([{"path": "0_StaticEmbedding", "type": "sentence_transformers.models.StaticEmbedding"}], {}, "StaticEmbedding"),
     ([{**TRANSFORMER, "type": "custom_st.Transformer"}, POOLING], {}, "custom_st.Transformer"),
     ([TRANSFORMER, NORMALIZE, POOLING], {}, "not in the order"),
     ([TRANSFORMER, POOLING], {"pooling_mode_cls_token": True, "pooling_mode_mean_tokens": True}, "cls, mean concat"),
     ([TRANSFORMER, POOLING], {"pooling_mode": ["mean", "max"]}, "mean, max concatenated"),
     ([TRANSFORMER, POOLING], {"pooling_mode": "median"}, "unknown pooling mode 'median'")],
)  # fmt: skip
def test_what_distill_would_not_reproduce_is_refused(
    modules: list[dict], pooling: dict, message: str, tmp_path: Path
) -> None:
    with pytest.raises(DistillError, match=message):
        read_teacher_files(st_folder(tmp_path, pooling, modules))


def test_prompt_names_are_checked() -> None:
    files = TeacherFiles(Path("."), prompts={"query": "query: ", "passage": "passage: "})
    assert (files.prompt("passage"), files.prompt(None, "x: "), files.prompt("query", "x: ")) == ("passage: ", "x: ",
                                                                                                  "x: ")  # fmt: skip
    with pytest.raises(DistillError, match="no prompt named 'doc'; its prompts are 'query', 'passage'"):
        files.prompt("doc")
    with pytest.raises(DistillError, match="no prompt named 'query'; it has no prompts"):
        TeacherFiles(Path(".")).prompt("query")


def test_a_prompt_left_out_of_pooling_is_refused(tmp_path: Path) -> None:
    path = teacher_folder(tmp_path, "bert", Pooling.MEAN, settings={"prompts": {"query": "query: "}})
    write_json(path / "1_Pooling" / "config.json", {"pooling_mode": "mean", "include_prompt": False})
    with pytest.raises(DistillError, match="include_prompt: false"):
        Teacher.load(str(path), prompt_name="query")
    assert Teacher.load(str(path)).prompt == ""  # without a prompt nothing is left out


def test_remote_code_needs_the_flag(tmp_path: Path) -> None:
    path = teacher_folder(tmp_path, "bert", Pooling.MEAN)
    config = json.loads((path / "config.json").read_text())
    write_json(path / "config.json", {**config, "auto_map": {"AutoModel": "modeling_custom.CustomModel"}})
    with pytest.raises(DistillError, match="--trust-remote-code"):
        Teacher.load(str(path))


def test_weights_missing_from_the_files_are_a_warning(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = teacher_folder(tmp_path, "bert", Pooling.MEAN)
    weights = load_file(str(path / "model.safetensors"))
    lost = next(k for k in weights if "layer.1.output.dense.weight" in k)
    save_file({k: v for k, v in weights.items() if k != lost}, str(path / "model.safetensors"))
    with caplog.at_level(logging.WARNING):
        Teacher.load(str(path))
    assert "random" in caplog.text and lost.removeprefix("bert.") in caplog.text


def test_dense_round_trips_through_sentence_transformers(tmp_path: Path) -> None:
    torch.manual_seed(0)
    dense = Dense(8, 4, activation=nn.PReLU())  # an activation with a weight of its own
    dense.save(tmp_path / "dense")
    x = torch.randn(3, 8)
    theirs = STDense.load(str(tmp_path / "dense"))({"sentence_embedding": x})["sentence_embedding"]
    ours = Dense.from_folder(tmp_path / "dense")
    with torch.no_grad():
        torch.testing.assert_close(theirs, dense(x))
        torch.testing.assert_close(ours(x), dense(x))
    (tmp_path / "dense" / "model.safetensors").unlink()  # an older folder keeps its weights as a PyTorch pickle
    pickle = {"linear.weight": dense.linear.weight, "linear.bias": dense.linear.bias,
              "activation_function.weight": dense.activation.weight}  # fmt: skip
    torch.save(pickle, tmp_path / "dense" / "pytorch_model.bin")
    with torch.no_grad():
        torch.testing.assert_close(Dense.from_folder(tmp_path / "dense")(x), dense(x))


@pytest.mark.parametrize("activation", ["os.system", "mypackage.layers.Swish", "torch.nn.functional.gelu"])
def test_a_dense_activation_that_is_not_a_torch_module_is_refused(activation: str, tmp_path: Path) -> None:
    write_json(tmp_path / "config.json", {"in_features": 4, "out_features": 2, "activation_function": activation})
    with pytest.raises(DistillError, match=r"not a torch\.nn module class"):
        Dense.from_folder(tmp_path)


def test_a_hub_teacher_is_read_from_its_downloaded_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = teacher_folder(tmp_path / "snapshot", "bert", Pooling.CLS)
    monkeypatch.setattr(distill.teacher.model, "snapshot_download", lambda name, **kwargs: str(path))
    teacher = Teacher.load("someone/tiny-teacher")
    assert (teacher.path, teacher.pooling, teacher.dim) == (path, Pooling.CLS, 16)

    def unreachable(name: str, **kwargs: object) -> str:
        raise OSError("cannot reach the hub\nmore detail")

    monkeypatch.setattr(distill.teacher.model, "snapshot_download", unreachable)
    with pytest.raises(
        DistillError, match=r"could not load teacher 'someone/tiny-teacher': cannot reach the hub\. Pass"
    ):
        Teacher.load("someone/tiny-teacher")
