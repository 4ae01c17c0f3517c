"""`distill write-table` and `distill push`: students where their users already are (sentence-transformers,
model2vec, the Hugging Face Hub)."""

from __future__ import annotations

from pathlib import Path

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
    from distill.cards import Figure, student_card, teacher_license

    written = Figure(f"from {student_dir}", f"distill write-table --student {student_dir}")
    student_card("static", Path(output_dir).name, Path(output_dir), config.teacher, {"table written out": written},
                 teacher_license(config.teacher)).write(output_dir)  # fmt: skip
    click.echo(f"{output_dir}: a static student of {config.vocab_size} x {config.dim} rows from {student_dir}")


@click.command()
@click.argument("folder", type=click.Path(file_okay=False))
@click.option("--repo", required=True, metavar="ORG/NAME", help="The Hub repository to create (if needed) and fill.")
@click.option("--private", is_flag=True, help="Create the repository private (an existing one keeps its setting).")
@click.option("-v", "--verbose", is_flag=True, help="Log debug detail.")
@_user_errors
def push(folder: str, repo: str, private: bool, verbose: bool) -> None:
    """Upload a student or export FOLDER, with its model card, to a Hugging Face Hub repository.

    \b
    The token is HF_TOKEN (or the one `hf auth login` stored). Example:
      HF_TOKEN=hf_... distill push runs/default/students/static --repo my-org/minilm-static
    """
    from distill.hub import push as push_folder

    _setup_logging(verbose)
    click.echo(f"pushed {folder} to {push_folder(folder, repo, private=private)}")
