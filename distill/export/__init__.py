"""Export: students to ONNX, fp32 and int8, each checked against torch before anything is written.

    exporter.py     `export_student` / `export_run` (`distill export`): trace, quantise, check parity,
                    and write a folder the torch-free runtime (`distill.runtime`) loads
    static_graph.py the static student's graphs, built node by node: a table lookup on flat token ids

What an export measured goes into its folder (`parity.json`); the eval suite reads it from there.
"""
