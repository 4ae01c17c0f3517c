"""Task heads on a model: a classifier on sentence vectors, a tagger on token vectors in context.

    data.py        labelled files (.csv / .jsonl / .parquet) and the frozen encode of a student, an
                   export or a teacher
    head.py        `ClassifierHead` (the torch head), its config (`head.json`) and `HeadTrainConfig`
    classifier.py  a head's training on frozen vectors (logistic regression solved with L-BFGS, or an MLP)
    tagging.py     the tokens task: a tagger read from each word's first sub-token, entity F1
    export.py      a head and its model in one ONNX graph per precision, parity-checked (`distill head export`)
    tagger_export.py  the same for a tagger: per-token tag probabilities (`distill.runtime.OnnxTagger` reads them)
    models.py      the models a head sits on: loaded by name, the teacher as a student, a tuned head's own model
    tune_config.py `TuneConfig` (torch-free, for the CLI's defaults)
    tuning.py      a classifier trained together with its model (`distill head train --tune last|query|all`)
    tune_tagger.py a tagger trained together with its transformer (`--task tokens --tune`)
    untuned.py     the model a tuned head was tuned from, shipped in its export for embeddings
    contrastive.py the contrastive start of a tuned head (SetFit's pairs from the labels)

`distill head compare` (the same head on the teacher and each student) is evaluation and lives in
`eval/head_compare.py`; the CLI is `distill/cli/heads.py`; `OnnxClassifier` runs an exported head.
"""
