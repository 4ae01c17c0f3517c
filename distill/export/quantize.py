"""int8 whose vectors do not depend on the batch: weights int8 per output channel, activations int8 per row.

onnxruntime's dynamic quantisation (`quantize_dynamic`) takes one scale for a whole activation tensor, so a
token's int8 codes depend on every other row of the batch, padding included: the default teacher's int8 vector
of a text changed by up to 0.04 with what it was batched with. Here every product of an activation with a
constant weight (MatMul, Gemm) quantises the activation row by row, each row (one token) with its own scale,
so a row's codes, and a text's vector, depend on that text alone:

    x (..., K) float                      a row: one token's hidden state
    s = max|x| / 127 per row (..., 1)     symmetric, the row's own range
    q = round(x / s) + 128 (..., K) uint8
    y = s * MatMulIntegerToFloat(q, W_int8, 1, w_scale, zero point 128) + bias

Products that share their input (a layer's query, key and value) become one product over the joined weights,
split after the bias, so the input is quantised once and the integer kernel runs once. Tables read by Gather
(word embeddings) are stored as int8 rows with a scale each and dequantised only where gathered.

NOTE: the product is written as onnxruntime's MatMulIntegerToFloat rather than MatMulInteger -> Cast -> Mul:
onnxruntime fuses that chain into MatMulIntegerToFloat itself at load and reads the per-row scale as if it
were one scale for the whole tensor (the teacher's cosine to fp32 fell to 0.64).

NOTE: a product whose input comes after a sum across rows (mean pooling, the token generator's bag of
n-grams) keeps its fp32 weights. onnxruntime sums such an axis in an order that depends on the batch's
shape, so the input differs in its last bits with the batch (1e-7), and a code that sits on a rounding
boundary then flips: 9e-4 on the token generator's vectors. Those products run once a text, not once a
token, so int8 would buy little there anyway.
"""

from __future__ import annotations

import contextlib
import logging
import tempfile
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
from onnx import helper, numpy_helper
from onnxruntime.quantization.shape_inference import quant_pre_process

ORT_DOMAIN = "com.microsoft"  # onnxruntime's own operators
ZERO_POINT = 128  # the activations' uint8 zero point: symmetric codes -127..127 stored as 1..255
REDUCTIONS = {"ReduceSum", "ReduceMean", "ReduceMax", "ReduceMin", "ReduceProd", "ReduceL1", "ReduceL2",
              "ReduceLogSum", "ReduceLogSumExp", "ReduceSumSquare", "CumSum"}  # fmt: skip
_CONSTANTS = {"rowq_inv127": (1 / 127, np.float32), "rowq_tiny": (1e-30, np.float32),
              "rowq_one": (1.0, np.float32), "rowq_zero_point": (ZERO_POINT, np.uint8),
              "rowq_last_axis": ([-1], np.int64)}  # fmt: skip


def quantize(fp32: Path, int8: Path, *, fused: bool = False) -> None:
    """Write `fp32` as int8 to `int8`: weights per output channel, activations per row (see the module's notes).

    NOTE: onnxruntime's pre-processing (graph optimisation, shape inference) first: on the transformer
    student it made the int8 graph about 1.25x faster. Symbolic shape inference cannot follow the traced
    attention mask, so only ONNX's own runs. A fused graph (`--fuse`) holds onnxruntime's own operators,
    which ONNX's shape inference does not know: it is not optimised again, and its Attention nodes keep
    their fp32 weights.
    """
    with quiet_root_logger(), tempfile.TemporaryDirectory(dir=int8.parent) as work:
        prepared = Path(work) / "prepared.onnx"
        quant_pre_process(str(fp32), str(prepared), skip_symbolic_shape=True, skip_optimization=fused)
        onnx.save(per_row_int8(onnx.load(str(prepared))), str(int8))


@contextlib.contextmanager
def quiet_root_logger() -> Iterator[None]:
    """The root logger at WARNING or above for the block: onnxruntime's tools log their every step on it."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(max(level, logging.WARNING))
    try:
        yield
    finally:
        root.setLevel(level)


@dataclass
class _Product:
    """One activation x constant weight product of the fp32 graph, with the bias added right after it."""

    node: onnx.NodeProto  # the MatMul
    weight: np.ndarray  # (K, N) float32
    bias: np.ndarray | None  # (N,), when one Add of a constant follows the product and nothing else reads it
    output: str  # the tensor the rest of the graph reads: the Add's output with a bias, else the MatMul's


def per_row_int8(model: onnx.ModelProto) -> onnx.ModelProto:
    """`model` with every MatMul (and Gemm) of a token's activation and a constant 2-D weight in per-row int8,
    and every float table read by Gather in int8 rows."""
    graph = model.graph
    _gemms_to_matmuls(graph)
    initializers = {t.name: t for t in graph.initializer}
    consumers: dict[str, list[onnx.NodeProto]] = defaultdict(list)
    for node in graph.node:
        for name in set(node.input):
            consumers[name].append(node)
    summed = _after_row_sums(model, initializers)
    products = [p for p in _products(graph, initializers, consumers) if p.node.input[0] not in summed]
    by_input: dict[str, list[_Product]] = defaultdict(list)
    for product in products:
        by_input[product.node.input[0]].append(product)
    replaced = {id(p.node) for p in products} | {id(consumers[p.node.output[0]][0]) for p in products
                                                 if p.bias is not None}  # fmt: skip
    nodes, tensors = [], [numpy_helper.from_array(np.array(v, dtype), name) for name, (v, dtype) in _CONSTANTS.items()]
    axes_input = _opset(model) >= 18  # NOTE: ReduceMax takes its axes as an input from opset 18
    for node in graph.node:
        table = _table(node, initializers)
        if table is not None:
            new_nodes, new_tensors = _int8_table(node, table, _opset(model) >= 13)
            nodes += new_nodes
            tensors += new_tensors
        elif id(node) not in replaced:
            nodes.append(node)
        elif node.op_type == "MatMul" and by_input.get(node.input[0]):
            quantized, scale, row_nodes = _row_quantizer(node.input[0], axes_input)
            product_nodes, product_tensors = _joined_product(by_input.pop(node.input[0]), quantized, scale)
            nodes += row_nodes + product_nodes
            tensors += product_tensors
    del graph.node[:]
    graph.node.extend(nodes)
    used = {name for n in graph.node for name in n.input}
    new = {t.name: t for t in reversed(tensors) if t.name in used}  # NOTE: a table gathered twice is stored once
    kept = [t for t in graph.initializer if t.name in used and t.name not in new]
    del graph.initializer[:]
    graph.initializer.extend(kept + list(new.values()))
    if all(o.domain != ORT_DOMAIN for o in model.opset_import):
        model.opset_import.append(helper.make_opsetid(ORT_DOMAIN, 1))
    return model


def _products(
    graph: onnx.GraphProto, initializers: dict[str, onnx.TensorProto], consumers: dict[str, list[onnx.NodeProto]]
) -> list[_Product]:
    """The MatMuls of an activation (first input) and a constant 2-D weight, each with its bias if it has one."""
    outputs = {o.name for o in graph.output}
    products = []
    for node in graph.node:
        if node.op_type != "MatMul" or node.input[1] not in initializers or node.input[0] in initializers:
            continue
        weight = numpy_helper.to_array(initializers[node.input[1]])
        if weight.ndim != 2 or weight.dtype != np.float32:
            continue
        bias, output = None, node.output[0]
        readers = consumers[node.output[0]]
        if len(readers) == 1 and readers[0].op_type == "Add" and node.output[0] not in outputs:
            other = [i for i in readers[0].input if i != node.output[0]]
            if len(other) == 1 and other[0] in initializers:
                value = numpy_helper.to_array(initializers[other[0]])
                if value.dtype == np.float32 and value.shape == (weight.shape[1],):
                    bias, output = value, readers[0].output[0]
        products.append(_Product(node, weight, bias, output))
    return products


def _after_row_sums(model: onnx.ModelProto, initializers: dict[str, onnx.TensorProto]) -> set[str]:
    """The tensors computed after a reduction over any axis but the last (a sum across a text's tokens)."""
    ranks = {v.name: len(v.type.tensor_type.shape.dim) for v in [*model.graph.value_info, *model.graph.input]
             if v.type.tensor_type.HasField("shape")}  # fmt: skip
    summed: set[str] = set()
    for node in model.graph.node:
        if any(name in summed for name in node.input) or (
            node.op_type in REDUCTIONS and not _last_axis_only(node, initializers, ranks.get(node.input[0]))
        ):
            summed.update(node.output)
    return summed


def _last_axis_only(node: onnx.NodeProto, initializers: dict[str, onnx.TensorProto], rank: int | None) -> bool:
    """Whether the reduction `node` reduces its input's last axis and no other (a row to one number)."""
    attributes = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    if node.op_type == "CumSum":
        return False
    if len(node.input) > 1 and node.input[1] in initializers:
        axes = numpy_helper.to_array(initializers[node.input[1]]).reshape(-1).tolist()
    else:
        axes = attributes.get("axes")
    return axes is not None and all(a == -1 or (rank is not None and a == rank - 1) for a in axes)


def _row_quantizer(x: str, axes_input: bool) -> tuple[str, str, list[onnx.NodeProto]]:
    """Nodes quantising `x` (..., K) row by row: the uint8 codes (..., K) and each row's scale (..., 1)."""
    node = helper.make_node
    p = f"{x}_rowq"
    reduce = (node("ReduceMax", [f"{p}_abs", "rowq_last_axis"], [f"{p}_max"], keepdims=1) if axes_input
              else node("ReduceMax", [f"{p}_abs"], [f"{p}_max"], axes=[-1], keepdims=1))  # fmt: skip
    nodes = [
        node("Abs", [x], [f"{p}_abs"]),
        reduce,  # (..., 1)
        node("Max", [f"{p}_max", "rowq_tiny"], [f"{p}_safe_max"]),  # NOTE: an all-zero row keeps codes of 0
        node("Mul", [f"{p}_safe_max", "rowq_inv127"], [f"{p}_scale"]),
        node("Reciprocal", [f"{p}_scale"], [f"{p}_inverse"]),
        node("Mul", [x, f"{p}_inverse"], [f"{p}_unit"]),  # each row in -127..127
        node("QuantizeLinear", [f"{p}_unit", "rowq_one", "rowq_zero_point"], [f"{p}_codes"]),  # rounds half to even
    ]
    return f"{p}_codes", f"{p}_scale", nodes


def _joined_product(
    group: list[_Product], quantized: str, scale: str
) -> tuple[list[onnx.NodeProto], list[onnx.TensorProto]]:
    """One int8 product for every product in `group` (they share their input), split back into their outputs."""
    node = helper.make_node
    codes, weight_scale = quantize_columns(np.concatenate([p.weight for p in group], axis=1))  # (K, sum of N)
    name = f"{group[0].node.input[1]}_rowq"
    tensors = [numpy_helper.from_array(codes, f"{name}_codes"), numpy_helper.from_array(weight_scale, f"{name}_scale")]
    nodes = [
        node("MatMulIntegerToFloat", [quantized, f"{name}_codes", "rowq_one", f"{name}_scale", "rowq_zero_point"],
             [f"{name}_unscaled"], domain=ORT_DOMAIN),  # (..., N) in units of each row's scale
        node("Mul", [f"{name}_unscaled", scale], [f"{name}_scaled"]),
    ]  # fmt: skip
    joined = f"{name}_scaled"
    if any(p.bias is not None for p in group):
        # NOTE: a product without a bias gets zeros, so one Add serves the group
        bias = np.concatenate([p.bias if p.bias is not None else np.zeros(p.weight.shape[1], np.float32)
                               for p in group])  # fmt: skip
        tensors.append(numpy_helper.from_array(bias.astype(np.float32), f"{name}_bias"))
        nodes.append(node("Add", [joined, f"{name}_bias"], [f"{name}_biased"]))
        joined = f"{name}_biased"
    if len(group) == 1:
        nodes[-1].output[0] = group[0].output
    else:
        tensors.append(numpy_helper.from_array(np.array([p.weight.shape[1] for p in group], np.int64), f"{name}_split"))
        nodes.append(node("Split", [joined, f"{name}_split"], [p.output for p in group], axis=-1))
    return nodes, tensors


def quantize_columns(weight: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Symmetric int8 columns of `weight` (K, N) and one float32 scale per column (N,): weight ~= codes * scale."""
    scale = np.abs(weight).max(axis=0) / 127
    scale = np.where(scale > 0, scale, 1.0).astype(np.float32)  # an all-zero column stays zero
    return np.clip(np.rint(weight / scale), -127, 127).astype(np.int8), scale


def _table(node: onnx.NodeProto, initializers: dict[str, onnx.TensorProto]) -> np.ndarray | None:
    """The float table (rows, width) a Gather of rows reads, or None for any other node."""
    if node.op_type != "Gather" or node.input[0] not in initializers or node.input[1] in initializers:
        return None
    attributes = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    table = numpy_helper.to_array(initializers[node.input[0]])
    return table if table.ndim == 2 and table.dtype == np.float32 and attributes.get("axis", 0) == 0 else None


def _int8_table(
    node: onnx.NodeProto, table: np.ndarray, axes_input: bool
) -> tuple[list[onnx.NodeProto], list[onnx.TensorProto]]:
    """The Gather `node` of `table` (rows, width) reading int8 rows, dequantised once gathered: onnxruntime's
    GatherBlockQuantized, a scale for each block of up to 128 numbers of a row, where the width allows it."""
    name, out = node.input[0], node.output[0]
    block = next((b for b in (128, 64, 32, 16) if table.shape[1] % b == 0), None)
    if block is not None:  # NOTE: its blocks must be a power of 2 of at least 16 numbers
        rows, width = table.shape
        codes, scale = quantize_columns(table.reshape(rows * width // block, block).T)  # a scale for each block
        codes = (codes.T.reshape(rows, width).astype(np.int16) + ZERO_POINT).astype(np.uint8)
        gather = helper.make_node(
            "GatherBlockQuantized",
            [f"{name}_rowq_codes", node.input[1], f"{name}_rowq_scale"],
            [out],
            domain=ORT_DOMAIN,
            gather_axis=0,
            quantize_axis=1,
            block_size=block,
            bits=8,
        )
        scale = scale.reshape(rows, width // block)
        return [gather], [numpy_helper.from_array(codes, f"{name}_rowq_codes"),
                          numpy_helper.from_array(scale, f"{name}_rowq_scale")]  # fmt: skip
    codes, scale = quantize_columns(table.T)  # NOTE: a row's scale: a word's vector may be much longer than another's
    make = helper.make_node
    nodes = [
        make("Gather", [f"{name}_rowq_codes", node.input[1]], [f"{out}_codes"]),  # (..., width) int8
        make("Gather", [f"{name}_rowq_scale", node.input[1]], [f"{out}_scale"]),  # (...,)
        make("Cast", [f"{out}_codes"], [f"{out}_float"], to=onnx.TensorProto.FLOAT),
        make("Unsqueeze", [f"{out}_scale", "rowq_last_axis"], [f"{out}_scale_column"])
        if axes_input  # (..., 1)
        else make("Unsqueeze", [f"{out}_scale"], [f"{out}_scale_column"], axes=[-1]),  # NOTE: an input from opset 13
        make("Mul", [f"{out}_float", f"{out}_scale_column"], [out]),
    ]
    tensors = [numpy_helper.from_array(np.ascontiguousarray(codes.T), f"{name}_rowq_codes"),
               numpy_helper.from_array(scale, f"{name}_rowq_scale")]  # fmt: skip
    return nodes, tensors


def _gemms_to_matmuls(graph: onnx.GraphProto) -> None:
    """Each Gemm of an activation and constant weights (a Linear on a 2-D input) as MatMul + Add, in place."""
    initializers = {t.name: t for t in graph.initializer}
    nodes = []
    for node in graph.node:
        attributes = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        constant = all(name in initializers for name in node.input[1:] if name)
        if node.op_type != "Gemm" or not constant or attributes.get("transA", 0):
            nodes.append(node)
            continue
        weight = numpy_helper.to_array(initializers[node.input[1]]).astype(np.float32)
        weight = (weight.T if attributes.get("transB", 0) else weight) * attributes.get("alpha", 1.0)
        name = f"{node.output[0]}_weight"
        graph.initializer.append(numpy_helper.from_array(np.ascontiguousarray(weight, np.float32), name))
        if len(node.input) < 3 or not node.input[2]:
            nodes.append(helper.make_node("MatMul", [node.input[0], name], [node.output[0]]))
            continue
        bias = numpy_helper.to_array(initializers[node.input[2]]).astype(np.float32) * attributes.get("beta", 1.0)
        bias = np.broadcast_to(bias, weight.shape[1:]).copy()  # (N,)
        graph.initializer.append(numpy_helper.from_array(bias, f"{name}_bias"))
        nodes += [helper.make_node("MatMul", [node.input[0], name], [f"{node.output[0]}_product"]),
                  helper.make_node("Add", [f"{node.output[0]}_product", f"{name}_bias"], [node.output[0]])]  # fmt: skip
    del graph.node[:]
    graph.node.extend(nodes)


def _opset(model: onnx.ModelProto) -> int:
    return next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 1)
