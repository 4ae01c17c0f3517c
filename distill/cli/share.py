"""`distill write-table` and `distill push`: students where their users already are (sentence-transformers,
model2vec, the Hugging Face Hub)."""

from __future__ import annotations

import click

from distill.cli.common import setup_logging as _setup_logging
from distill.cli.common import user_errors as _user_errors


@click.command("write-table")
@click.option("--student", "student_dir", required=True, type=click.Path(file_okay=False),
              help="A saved token-generator student (runs/default/students/tokengen).")  # fmt: skip
@click.option("--output", "output_dir", required=True, type=click.Path(file_okay=False),
              help="The static student folder to write.")  # fmt: skip
@click.option("-v", "--verbose", is_flag=True, help="Log debug detail.")
@_user_errors
def write_table(student_dir: str, output_dir: str, verbose: bool) -> None:
    """Write a token generator's table out as a static student that sentence-transformers and model2vec load.

    \b
    The generator writes every vocabulary token's row; with its per-token weights and its shared map folded
    in, the table gives the student's own vectors (a text with no tokens apart: a zero vector). The folder
    is a static student: `distill export`, SentenceTransformer(path) and StaticModel.from_pretrained(path)
    all read it. It is as large as a static student's table.
    """
    import students
    from distill.errors import DistillError
    from students.static import StaticStudent
    from students.tokengen import TokenGenStudent

    _setup_logging(verbose)
    generator = students.load(student_dir)
    if not isinstance(generator, TokenGenStudent):
        raise DistillError(f"{student_dir!r} is a {generator.kind} student; write-table reads a tokengen student")
    config = generator.config
    table = StaticStudent.from_table(generator.static_table(), generator.tokenizer, teacher=config.teacher,
                                     prompt=config.prompt, max_length=config.max_length)  # fmt: skip
    table.save(output_dir)
    click.echo(f"{output_dir}: a static student of {config.vocab_size} x {config.dim} rows from {student_dir}")
