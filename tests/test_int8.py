"""Per-row int8: a text's int8 vector is the same alone, beside any texts and at any padding, for every student;
the export records it and refuses an int8 graph that breaks it (onnxruntime's dynamic int8 did)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

import distill.export.exporter
import students
from distill.data.targets import Targets
from distill.errors import DistillError
from distill.export.exporter import BATCH_TOLERANCE, export_student
from distill.export.quantize import per_row_int8
from distill.runtime import OnnxEmbedder
from distill.runtime.consistency import batch_dependence
from distill.teacher.model import Teacher
from eval.experiments.int8 import dynamic_int8
from tests.conftest import SENTENCES
from tests.test_export import BUILDERS

TEXTS = [*SENTENCES, "a", "", "one much longer text that runs on and on " * 4, "Paris, 1889: the tower opens."]


@pytest.fixture(scope="module", params=list(BUILDERS))
def exported(request: pytest.FixtureRequest, tiny_teacher: Teacher, tiny_targets: Targets,
             tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path, dict]:  # fmt: skip
    student = BUILDERS[request.param](tiny_teacher, tiny_targets)
    student.finalize()
    saved = student.save(tmp_path_factory.mktemp(request.param) / "student")
    out = saved.parent / "export"
    return request.param, out, export_student(students.load(saved), out, name=request.param, texts=SENTENCES)


def test_every_int8_export_gives_a_text_one_vector_in_any_batch(exported: tuple[str, Path, dict]) -> None:
    kind, out, parity = exported
    for precision in ("fp32", "int8"):
        recorded = parity[precision]["batch_dependence"]
        assert (
            recorded["tolerance"] == BATCH_TOLERANCE and max(v for k, v in recorded.items() if k != "tolerance") <= 1e-6
        )
        embedder = OnnxEmbedder(out, precision=precision)
        assert max(batch_dependence(embedder, TEXTS).values()) <= 1e-6, (kind, precision)
        alone = np.vstack([embedder.encode([t]) for t in TEXTS])
        np.testing.assert_allclose(embedder.encode(TEXTS, batch_size=5), alone, atol=1e-6, rtol=0)


def test_dynamic_int8_depends_on_the_batch_and_the_export_refuses_it(
    tiny_teacher: Teacher, tiny_targets: Targets, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(distill.export.exporter, "quantize", lambda fp32, int8, fused=False: dynamic_int8(fp32, int8))
    student = BUILDERS["transformer"](tiny_teacher, tiny_targets)
    with pytest.raises(DistillError, match=r"the int8 graph gives a text another vector in a batch .* limit 1e-06"):
        export_student(student, tmp_path / "export", name="transformer", texts=TEXTS)
    assert not (tmp_path / "export").exists()


def _graph() -> onnx.ModelProto:
    """x (rows, 8) -> two products (one with a bias) and a Gemm, all reading x, a word table, and a product after a
    sum over rows, which must stay fp32."""
    rng = np.random.default_rng(0)
    weight = lambda *shape: numpy_helper.from_array(rng.standard_normal(shape).astype(np.float32), f"w{len(tensors)}")  # noqa: E731
    tensors: list[onnx.TensorProto] = []
    for shape in ((8, 6), (6,), (8, 4), (5, 8), (5,), (20, 16), (8, 3)):
        tensors.append(weight(*shape))
    node = helper.make_node
    nodes = [
        node("MatMul", ["x", "w0"], ["a"]), node("Add", ["a", "w1"], ["a_biased"]),  # shared input, with a bias
        node("MatMul", ["x", "w2"], ["b"]),  # shared input, without
        node("Gemm", ["x", "w3", "w4"], ["c"], transB=1),  # a Linear on a 2-D input
        node("Gather", ["w5", "ids"], ["rows"]),  # a word table, 16 wide
        node("ReduceSum", ["x", "axis0"], ["summed"], keepdims=1), node("MatMul", ["summed", "w6"], ["d"]),
    ]  # fmt: skip
    tensors.append(numpy_helper.from_array(np.array([0], np.int64), "axis0"))
    graph = helper.make_graph(
        nodes, "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["rows", 8]),
         helper.make_tensor_value_info("ids", TensorProto.INT64, ["n"])],
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, None) for n in ("a_biased", "b", "c", "rows", "d")],
        tensors,
    )  # fmt: skip
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_per_row_int8_quantises_each_row_alone_and_keeps_sums_across_rows_in_fp32(tmp_path: Path) -> None:
    fp32 = _graph()
    int8 = per_row_int8(_graph())
    ops = [n.op_type for n in int8.graph.node]
    assert ops.count("MatMulIntegerToFloat") == 1 and ops.count("Split") == 1  # x's three products, the Gemm too
    assert ops.count("QuantizeLinear") == 1 and "GatherBlockQuantized" in ops
    assert "DynamicQuantizeLinear" not in ops and ops.count("MatMul") == 1  # the product after the sum stays fp32
    sessions = []
    for model, name in ((fp32, "fp32"), (int8, "int8")):
        onnx.save(model, str(tmp_path / f"{name}.onnx"))
        sessions.append(ort.InferenceSession(str(tmp_path / f"{name}.onnx"), providers=["CPUExecutionProvider"]))
    rng = np.random.default_rng(1)
    x, ids = rng.standard_normal((4, 8)).astype(np.float32), np.array([3, 19, 3], np.int64)
    expected, got = (s.run(None, {"x": x, "ids": ids}) for s in sessions)
    for e, g in zip(expected, got, strict=True):
        np.testing.assert_allclose(g, e, atol=0.05 * np.abs(e).max())  # int8: close, not equal
    assert not np.array_equal(expected[0], got[0])
    x_other = x.copy()
    x_other[1:] *= 1000.0  # other rows a thousand times larger: the first row's codes must not move
    moved = sessions[1].run(None, {"x": x_other, "ids": ids})
    for first, again in zip(got[:3], moved[:3], strict=True):
        np.testing.assert_array_equal(first[0], again[0])


def test_a_table_too_narrow_for_blocks_is_dequantised_row_by_row(tmp_path: Path) -> None:
    table = np.random.default_rng(2).standard_normal((30, 12)).astype(np.float32)  # 12 is no multiple of 16
    graph = helper.make_graph(
        [helper.make_node("Gather", ["table", "ids"], ["rows"])], "g",
        [helper.make_tensor_value_info("ids", TensorProto.INT64, ["batch", "seq"])],
        [helper.make_tensor_value_info("rows", TensorProto.FLOAT, None)],
        [numpy_helper.from_array(table, "table")],
    )  # fmt: skip
    model = per_row_int8(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]))
    onnx.save(model, str(tmp_path / "table.onnx"))
    ids = np.array([[0, 5, 29], [7, 7, 1]], np.int64)
    rows = ort.InferenceSession(str(tmp_path / "table.onnx"), providers=["CPUExecutionProvider"]).run(
        None, {"ids": ids}
    )
    np.testing.assert_allclose(rows[0], table[ids], atol=np.abs(table).max() / 127)
