"""The eval suite (`distill eval`, `make eval`): the teacher beside every student and export, on the same data.

    models.py         everything compared, behind one interface: teacher, students, their ONNX files, the peer
    fidelity.py       how faithfully a model reproduces the teacher's sentence vectors (cosine, neighbours, ...)
    tasks.py          word and sentence tasks with gold answers (SimLex, WordSim, analogies, polarity, STS)
    latency.py        latency and throughput, every speed a ratio to the teacher timed beside it
    report.py         `distill eval`: all of this into `report.json`, `report.md` (markdown.py) and plots (plots.py)
    published.py      `make docs`: a run's report kept in docs/results/, every figure block of README.md and docs/
                      written from it (blocks.py: what each block says), `--check` for the tests
    head_compare.py   `distill head compare`: the same task head on the teacher and each student

The user's tasks (`--tasks`), each an evaluator `__call__(encoder) -> {metric: score}` on a `TaskEncoder`:

    encoders.py       `TaskEncoder` (a model on one backend, its own prompts, its identity); the corpus-vector cache
    retrieval.py      BEIR folders: nDCG@10, recall@100, MRR@10 (ranking.py: as trec_eval defines them); teacher index
    cloze.py          retrieval over a plain file of passages, no judgements needed (the inverse cloze task)
    classification.py the project's logistic-regression head on frozen vectors: accuracy, macro-F1
    clustering.py     k-means V-measure over several seeds
    sts.py            Spearman of cosine against gold scores
    suite.py          `--tasks SPEC` read into tasks; small_suite.py the data of the small suite that ships
    scoring.py        every task on the teacher and every model and backend, each score a share of the teacher's
    mteb_tasks.py     `--mteb TASK`: MTEB's own tasks through `MtebEncoder` (mteb_encoder.py; the mteb extra)

`eval/experiments/` holds the benchmarks and one-off measurements behind the docs; the suite never imports them.
"""
