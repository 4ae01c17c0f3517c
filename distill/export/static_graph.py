"""The static student's ONNX graphs: a table lookup on flat token ids, with no padding.

A static student's sentence vector is the L2-normalised mean of its tokens' rows, so its graph
needs no (batch, seq) tensors. It takes a batch's token ids one text after another and where each
text starts (the convention of torch's `nn.EmbeddingBag`), gathers the rows and sums them by text:

    input_ids         (tokens,) int64  the batch's token ids, text after text
    offsets           (batch,) int64   where each text starts in input_ids (a text with no tokens starts
                                       where the next one does)
    sentence_vectors  (batch, dim)     L2-normalised; zeros for a text with no tokens

`model_int8.onnx` holds the table as int8 with one float scale per row and dequantises only the
rows it gathers: onnxruntime's dynamic quantisation leaves a Gather's table in fp32. The export's
`config.json` says `"inputs": "flat"`, and `distill.runtime.OnnxEmbedder` feeds these inputs.

A compressed static student (`students.static_compressed`) gets the same lookup over its stored codes: the
graph gathers the codes of the tokens and decodes only those rows (int8 or int4 codes times the row's scale; pq
codes into their part's centroids). Its two files differ only in how the scales or codebooks are held: fp32 in
`model.onnx`, as stored (fp16 codebooks, and scales in the student's scale_dtype) in `model_int8.onnx`; both give
the same vectors, as the stored values are exact in fp32.

NOTE: run these graphs on one intra-op thread (`OnnxEmbedder` does): onnxruntime's CPU ScatterND
splits its reduction over the tokens between threads without locks, so two threads can add into
the row of one text at once and lose a token (rare: one vector in ~100k, off by up to 0.08).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import torch
from onnx import TensorProto, helper, numpy_helper

from distill.runtime import FLAT_INPUT_NAMES, OUTPUT_NAME
from students.static import StaticStudent
from students.static_compressed import CENTROIDS, CompressedStaticStudent
from students.static_compressed import quantize_rows as quantize_bits

OPSET = 17  # ScatterElements and ScatterND with reduction="add" need 16


def export_static(student: StaticStudent, fp32: Path, int8: Path) -> None:
    """Write the student's table as the fp32 and the int8 lookup graph (a compressed student's: its codes)."""
    if isinstance(student, CompressedStaticStudent):
        graphs = (compressed_graph(student, stored=False), compressed_graph(student, stored=True))
    else:
        table = student.table().float().cpu().numpy()  # (vocab, dim)
        graphs = (fp32_graph(table), int8_graph(table))
    for graph, path in zip(graphs, (fp32, int8), strict=True):
        onnx.checker.check_model(graph)
        onnx.save(graph, str(path))


def fp32_graph(table: np.ndarray) -> onnx.ModelProto:
    rows = [helper.make_node("Gather", ["table", "input_ids"], ["rows"])]  # (tokens, dim)
    return lookup_graph("static_fp32", rows, [numpy_helper.from_array(table, "table")], table.shape[1])


def int8_graph(table: np.ndarray) -> onnx.ModelProto:
    quantized, scales = quantize_rows(table)
    rows = [
        helper.make_node("Gather", ["table", "input_ids"], ["quantized_rows"]),  # (tokens, dim) int8
        helper.make_node("Gather", ["scales", "input_ids"], ["row_scales"]),  # (tokens,)
        helper.make_node("DequantizeLinear", ["quantized_rows", "row_scales"], ["rows"], axis=0),  # (tokens, dim)
    ]
    initializers = [numpy_helper.from_array(quantized, "table"), numpy_helper.from_array(scales, "scales")]
    return lookup_graph("static_int8", rows, initializers, table.shape[1])


def quantize_rows(table: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Symmetric int8 rows (vocab, dim) and one float32 scale per row (vocab,): row ~= scale * int8 row.

    NOTE: one scale per row rather than per column: the rows' sizes differ (norms from 0.6 to 27 in
    the default student), and on 2,000 test texts per-row scales kept a minimum cosine to fp32 of
    0.99996 where per-column ones fell to 0.995.
    """
    return quantize_bits(table, 8, torch.float32)  # an all-zero row stays zero


def compressed_graph(student: CompressedStaticStudent, *, stored: bool) -> onnx.ModelProto:
    """The lookup graph decoding `student`'s codes; `stored`: scales or codebooks in their saved dtypes, else fp32."""
    config = student.config
    saved = student.stored_parameters()  # the values as saved: fp32 holds them exactly
    values = {name: v if stored else v.float() for name, v in saved.items()}
    codes = numpy_helper.from_array(student.codes.cpu().numpy(), "codes")
    if config.scheme == "pq":
        rows, initializers = pq_rows(values["codebooks"].cpu().numpy())
    else:
        scales = values["scales"].cpu().numpy()
        rows, initializers = (int8_rows if config.scheme == "int8" else int4_rows)(scales)
    return lookup_graph(f"static_{config.scheme}", rows, [codes, *initializers], config.dim)


def pq_rows(codebooks: np.ndarray) -> tuple[list[onnx.NodeProto], list[onnx.TensorProto]]:
    """Nodes decoding product-quantised codes: a token's code for part p names row p * 256 + code of the parts'
    codebooks stacked (parts * 256, dim / parts)."""
    parts = codebooks.shape[0]
    node = helper.make_node
    nodes = [
        node("Gather", ["codes", "input_ids"], ["token_codes"]),  # (tokens, parts) uint8
        node("Cast", ["token_codes"], ["token_codes_64"], to=TensorProto.INT64),
        node("Add", ["token_codes_64", "part_starts"], ["centroid_ids"]),  # (tokens, parts)
        node("Gather", ["codebooks", "centroid_ids"], ["pieces"]),  # (tokens, parts, dim / parts)
        *_to_float("pieces", "float_pieces", codebooks.dtype),
        node("Flatten", ["float_pieces"], ["rows"], axis=1),  # (tokens, dim)
    ]
    stacked = numpy_helper.from_array(codebooks.reshape(parts * CENTROIDS, -1), "codebooks")
    return nodes, [stacked, _int64("part_starts", list(range(0, parts * CENTROIDS, CENTROIDS)))]


def int8_rows(scales: np.ndarray) -> tuple[list[onnx.NodeProto], list[onnx.TensorProto]]:
    """Nodes decoding int8 codes: each gathered row times its scale."""
    nodes = [
        helper.make_node("Gather", ["codes", "input_ids"], ["quantized_rows"]),  # (tokens, dim) int8
        helper.make_node("Gather", ["scales", "input_ids"], ["stored_scales"]),  # (tokens,)
        *_to_float("stored_scales", "row_scales", scales.dtype),
        helper.make_node("DequantizeLinear", ["quantized_rows", "row_scales"], ["rows"], axis=0),  # (tokens, dim)
    ]
    return nodes, [numpy_helper.from_array(scales, "scales")]


def int4_rows(scales: np.ndarray) -> tuple[list[onnx.NodeProto], list[onnx.TensorProto]]:
    """Nodes decoding int4 codes, two a byte (the even value in the low four bits, each stored + 8): unpacked with
    integer arithmetic (opset 17 has no bitwise ops), less 8, times the row's scale."""
    node = helper.make_node
    nodes = [
        node("Gather", ["codes", "input_ids"], ["packed"]),  # (tokens, dim / 2) uint8
        node("Cast", ["packed"], ["packed_32"], to=TensorProto.INT32),
        node("Div", ["packed_32", "sixteen"], ["high"]),
        node("Mul", ["high", "sixteen"], ["high_part"]),
        node("Sub", ["packed_32", "high_part"], ["low"]),
        node("Unsqueeze", ["low", "last"], ["low_1"]),  # (tokens, dim / 2, 1)
        node("Unsqueeze", ["high", "last"], ["high_1"]),
        node("Concat", ["low_1", "high_1"], ["pairs"], axis=2),  # (tokens, dim / 2, 2)
        node("Flatten", ["pairs"], ["shifted"], axis=1),  # (tokens, dim)
        node("Sub", ["shifted", "eight"], ["signed"]),
        node("Cast", ["signed"], ["values"], to=TensorProto.FLOAT),
        node("Gather", ["scales", "input_ids"], ["stored_scales"]),  # (tokens,)
        *_to_float("stored_scales", "token_scales", scales.dtype),
        node("Unsqueeze", ["token_scales", "one"], ["row_scales"]),  # (tokens, 1)
        node("Mul", ["values", "row_scales"], ["rows"]),  # (tokens, dim)
    ]
    constants = [numpy_helper.from_array(np.array(16, np.int32), "sixteen"),
                 numpy_helper.from_array(np.array(8, np.int32), "eight"), _int64("last", [2])]  # fmt: skip
    return nodes, [numpy_helper.from_array(scales, "scales"), *constants]


def _to_float(name: str, out: str, dtype: np.dtype) -> list[onnx.NodeProto]:
    """A Cast of `name` to float32 named `out` (an Identity when it is float32 already)."""
    if dtype == np.float32:
        return [helper.make_node("Identity", [name], [out])]
    return [helper.make_node("Cast", [name], [out], to=TensorProto.FLOAT)]


def lookup_graph(
    name: str, rows: list[onnx.NodeProto], initializers: list[onnx.TensorProto], dim: int
) -> onnx.ModelProto:
    """The graph around `rows` (nodes making "rows" (tokens, dim) from "input_ids"): sum by text, normalise.

    NOTE: a sum, not the student's mean: the L2 normalisation after it takes out the 1 / length,
    so both give the same vector (to 1e-7), and the sum needs no token counts.
    """
    node = helper.make_node
    nodes = [
        # which text each token is in: a 1 where a text starts, summed up to the token, less one
        node("Shape", ["input_ids"], ["tokens"]),
        node("Add", ["tokens", "one"], ["tokens_and_end"]),
        node("ConstantOfShape", ["tokens_and_end"], ["no_starts"], value=_filled(TensorProto.INT64, 0)),
        node("Shape", ["offsets"], ["batch"]),
        node("ConstantOfShape", ["batch"], ["ones"], value=_filled(TensorProto.INT64, 1)),
        node("ScatterElements", ["no_starts", "offsets", "ones"], ["starts"], reduction="add"),  # (tokens + 1,)
        node("Slice", ["starts", "zero", "tokens"], ["token_starts"]),  # (tokens,)
        node("CumSum", ["token_starts", "axis"], ["started"]),
        node("Sub", ["started", "one"], ["text_index"]),
        node("Unsqueeze", ["text_index", "one"], ["scatter_index"]),  # (tokens, 1)
        *rows,
        node("Concat", ["batch", "dim"], ["sums_shape"], axis=0),
        node("ConstantOfShape", ["sums_shape"], ["zeros"], value=_filled(TensorProto.FLOAT, 0)),
        node("ScatterND", ["zeros", "scatter_index", "rows"], ["sums"], reduction="add"),  # (batch, dim)
        node("LpNormalization", ["sums"], [OUTPUT_NAME], axis=1, p=2),  # zeros stay zeros
    ]
    graph = helper.make_graph(
        nodes, name,
        [helper.make_tensor_value_info(FLAT_INPUT_NAMES[0], TensorProto.INT64, ["tokens"]),
         helper.make_tensor_value_info(FLAT_INPUT_NAMES[1], TensorProto.INT64, ["batch"])],
        [helper.make_tensor_value_info(OUTPUT_NAME, TensorProto.FLOAT, ["batch", dim])],
        [*initializers, _int64("one", [1]), _int64("zero", [0]), _int64("axis", 0), _int64("dim", [dim])],
    )  # fmt: skip
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="distill-embeddings")


def _int64(name: str, values: int | list[int]) -> onnx.TensorProto:
    return numpy_helper.from_array(np.array(values, dtype=np.int64), name)


def _filled(dtype: int, value: float) -> onnx.TensorProto:
    """A ConstantOfShape's `value`: what its output is filled with."""
    return helper.make_tensor("value", dtype, [1], [value])
