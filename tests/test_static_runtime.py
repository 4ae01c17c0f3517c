"""The static student's export: a lookup on flat token ids, fp32 and int8, as `OnnxEmbedder` runs it."""

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from transformers import BertTokenizerFast

from distill.errors import DistillError
from distill.export.exporter import export_config, export_onnx, export_student
from distill.export.static_graph import quantize_rows
from distill.runtime import FLAT_INPUT_NAMES, OnnxEmbedder, flatten
from eval.latency import tokenizer_throughput
from students.static import StaticConfig, StaticStudent
from tests.conftest import SENTENCES

EDGES = ["", "a", "word " * 50, "a few words", ""]  # empty (also last in a batch), one token, truncated


@pytest.fixture(scope="module")
def student(tokenizer: BertTokenizerFast) -> StaticStudent:
    """A static student with a random table and a short max length (8 tokens), so truncation is common."""
    config = StaticConfig(dim=16, vocab_size=tokenizer.vocab_size, max_length=8, teacher="tiny", factored=False)
    student = StaticStudent(config, tokenizer.backend_tokenizer)
    rows = np.random.default_rng(0).standard_normal((tokenizer.vocab_size, 16))
    student.init_table(rows * np.random.default_rng(1).uniform(0.1, 10, (tokenizer.vocab_size, 1)))  # sizes vary
    return student.eval()


@pytest.fixture(scope="module")
def exported(student: StaticStudent, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("static") / "export"
    export_student(student, out, name="static", texts=SENTENCES)
    return out


def test_the_static_export_takes_flat_token_ids(exported: Path) -> None:
    assert json.loads((exported / "config.json").read_text())["inputs"] == "flat"
    for file in ("model.onnx", "model_int8.onnx"):
        graph = onnx.load(str(exported / file)).graph
        assert tuple(i.name for i in graph.input) == FLAT_INPUT_NAMES


@pytest.mark.parametrize("batch_size", [1, 3, 1000])
def test_fp32_gives_the_torch_students_vectors_on_edge_cases(
    student: StaticStudent, exported: Path, batch_size: int
) -> None:
    texts = [*EDGES, *SENTENCES, *EDGES]  # mixed lengths in every batch
    vectors = OnnxEmbedder(exported, threads=1).encode(texts, batch_size=batch_size)
    np.testing.assert_allclose(vectors, student.encode(texts), atol=1e-4)
    assert not vectors[0].any() and not vectors[-1].any()  # an empty text: zeros, as torch gives
    np.testing.assert_allclose(np.linalg.norm(vectors[1:4], axis=1), 1.0, atol=1e-5)


def test_the_lookup_runs_on_one_thread(exported: Path) -> None:
    """onnxruntime's ScatterND adds in parallel without locks: two threads on one text's row lose tokens."""
    for precision in ("fp32", "int8"):
        session = OnnxEmbedder(exported, precision=precision, threads=4).session
        assert session.get_session_options().intra_op_num_threads == 1


def test_long_texts_are_truncated_like_the_student(student: StaticStudent, exported: Path) -> None:
    embedder = OnnxEmbedder(exported)
    long_text = " ".join(SENTENCES)
    assert len(embedder.token_ids([long_text])[0]) == student.config.max_length
    np.testing.assert_allclose(embedder.encode([long_text]), student.encode([long_text]), atol=1e-4)


def test_int8_table_dequantises_to_the_fp32_one(student: StaticStudent, exported: Path) -> None:
    table = student.embedding.weight.detach().numpy()
    quantized, scales = quantize_rows(table)
    assert quantized.dtype == np.int8 and scales.shape == (table.shape[0],)
    assert np.all(np.abs(quantized * scales[:, None] - table) <= scales[:, None] / 2 + 1e-6)
    initializers = onnx.load(str(exported / "model_int8.onnx")).graph.initializer
    tables = [t for t in initializers if list(t.dims) == list(table.shape)]
    assert [t.data_type for t in tables] == [onnx.TensorProto.INT8]  # no float copy of the table
    texts = [*SENTENCES, *EDGES]
    fp32 = OnnxEmbedder(exported).encode(texts)
    int8 = OnnxEmbedder(exported, precision="int8").encode(texts)
    cosines = (fp32 * int8).sum(axis=1)
    assert cosines[[i for i, t in enumerate(texts) if t]].min() > 0.999 and not np.array_equal(fp32, int8)


def test_an_older_padded_export_still_loads(student: StaticStudent, tmp_path: Path) -> None:
    """An export from before the flat graph: a traced (input_ids, attention_mask) graph, no `inputs` in its config."""
    export_onnx(student, tmp_path / "model.onnx")
    student.tokenizer.save(str(tmp_path / "tokenizer.json"))
    config = dict(export_config(student, "static").__dict__)
    del config["inputs"]
    (tmp_path / "config.json").write_text(json.dumps(config))
    embedder = OnnxEmbedder(tmp_path)
    assert embedder.config.inputs == "padded"
    texts = [*EDGES, *SENTENCES]
    np.testing.assert_allclose(embedder.encode(texts, batch_size=4), student.encode(texts), atol=1e-4)


def test_a_config_with_unknown_inputs_is_refused(exported: Path, tmp_path: Path) -> None:
    config = json.loads((exported / "config.json").read_text())
    (tmp_path / "config.json").write_text(json.dumps({**config, "inputs": "ragged"}))
    for name in ("tokenizer.json", "model.onnx"):
        (tmp_path / name).write_bytes((exported / name).read_bytes())
    with pytest.raises(DistillError, match="not a valid export config: export inputs must be one of padded, flat"):
        OnnxEmbedder(tmp_path)


def test_flatten_puts_texts_end_to_end() -> None:
    input_ids, offsets = flatten([[5, 6], [], [7], []])
    assert input_ids.tolist() == [5, 6, 7] and offsets.tolist() == [0, 2, 2, 3]
    assert input_ids.dtype == offsets.dtype == np.int64


def test_tokenizer_throughput_times_the_runtimes_tokenizer_call(exported: Path) -> None:
    embedder = OnnxEmbedder(exported)
    calls = []
    embedder.encodings = lambda texts: calls.append(len(texts))  # type: ignore[method-assign]
    speed = tokenizer_throughput(embedder, SENTENCES * 10, repeats=4, min_seconds=0.0)
    assert speed > 0 and calls == [8] + [len(SENTENCES) * 10] * 4  # a warm-up call, then the timed passes
