"""The `distill` command (click), the user's verbs on top of every other package.

    commands.py  `distill run | targets | train | eval | export | embed | serve`
    options.py   the flags of run / targets / train (each a key of the --config file) and of embed / serve
    heads.py     `distill head train | eval | compare | export`
    share.py     `distill write-table | push`: students where their users are (sentence-transformers,
                 model2vec, the Hugging Face Hub)
    common.py    one line for a user's mistake (exit status 2), quiet logging

`python -m distill.cli` is the same command (torchrun starts it that way for several processes).
"""

from distill.cli.commands import main

__all__ = ["main"]
