"""The eval suite (`distill eval`, `make eval`): the teacher beside every student and export, on the same data.

    models.py       everything compared, behind one interface: teacher, students, their ONNX files, the peer
    fidelity.py     how faithfully a model reproduces the teacher's sentence vectors (cosine, neighbours, ...)
    tasks.py        word and sentence tasks with gold answers (SimLex, WordSim, analogies, polarity, STS)
    latency.py      latency and throughput, every speed a ratio to the teacher timed beside it
    report.py       `distill eval`: all of the above into `report.json`, `report.md` (markdown.py) and plots (plots.py)
    head_compare.py `distill head compare`: the same task head on the teacher and each student

`eval/experiments/` holds the benchmarks and one-off measurements behind the docs; the suite never imports them.
"""
