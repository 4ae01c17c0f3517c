"""Benchmarks and experiments: the measurements behind `make bench` and the figures in `docs/`.

    bench.py      `make bench`: the headline comparison of a run, measured now, and the service's load test
    loadtest.py   requests/s and latency of `distill serve` on loopback
    scale.py      `make bench SCALE=1`: how target extraction scales with processes, corpus size and disk
    precision.py  the teacher's extraction speed in each precision
    fusion.py     traced against fused ONNX graphs of the transformer student
    trials.py     small recipe trials (kept layers, epochs, another family's teacher, heads)
    recipes.py    runs side by side: each student's share of the teacher's task scores
    capacity.py   what a bag of tokens can reach (the static ceiling) and what a kept layer costs in speed

Each runs as `python -m eval.experiments.<name> --help`. Nothing in the toolkit imports these.
"""
