"""Export: students to ONNX, fp32 and int8, each checked against torch before anything is written.

    run.py          `export_run` (`distill export`): every student of a run, below
    exporter.py     `export_student`: trace, quantise, check parity,
                    and write a folder the torch-free runtime (`distill.runtime`) loads
    quantize.py     int8 with a scale per activation row, so a text's vector does not depend on its batch
    static_graph.py the static student's graphs, built node by node: a table lookup on flat token ids
    st_onnx.py      a transformer student's `onnx/` folder, which sentence-transformers' ONNX backend reads

What an export measured goes into its folder (`parity.json`); the eval suite reads it from there.
"""
