"""Training: the teacher's targets to trained, tested and saved students.

    config.py    `RunConfig`, one typed dataclass whose keys are the `distill run` flags and the TOML keys
    losses.py    regression losses, small `(student, teacher) -> scalar` modules: each vector against its target,
                 and the batch's similarity matrix and ranking against the teacher's
    fidelity.py  the mean cosine of a student's sentence and token vectors to the teacher's
    settings.py  `TrainConfig`: one student's training settings (epochs, learning rate, loss weights, Matryoshka dims)
    trainer.py   one loop for every student (`TrainConfig`, AdamW, warm-up and cosine decay, early
                 stopping on validation fidelity, checkpoints, `--resume`, several processes)
    pipeline.py  the whole job, `run(config)`: corpus and teacher to targets, then every student trained,
                 tested and saved, and the run's `summary.json`
    rerun.py     a run into a folder that holds one: adds, goes on, replaces, or is refused before any work
    checkpoint.py  what `--resume` goes on from, and a finished student's small last checkpoint
    finished.py  a finished run: `open_run`, its teacher, its targets built again (`distill targets --run`)

The Python front door, `distill.distill(...)`, is a thin layer over `pipeline.run`.
"""
