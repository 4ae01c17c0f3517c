"""A newcomer's ten common mistakes, each one line on stderr (`error: ...`) and exit status 2, before any work.

Each is tried as a user types it, on the default recipe where a run is asked for (no --config): the check must come
before the teacher's pass, so none of these takes more than a moment.
"""

import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from distill.cli.commands import main


@pytest.fixture()
def files(tmp_path: Path, export_dir: Path) -> Path:
    """A corpus, an empty and a binary one, a folder that is no model, a file in the way, a damaged export."""
    (tmp_path / "corpus.txt").write_text("\n".join(f"sentence number {i} about a topic" for i in range(50)))
    (tmp_path / "empty.txt").write_text("\n \n\n")
    (tmp_path / "binary.txt").write_bytes(bytes(range(256)) * 8)
    (tmp_path / "not-a-model").mkdir()
    (tmp_path / "a-file").write_text("not a folder")
    shutil.copytree(export_dir, tmp_path / "damaged")
    (tmp_path / "damaged" / "model.onnx").write_bytes(b"\x08\x01garbage")
    return tmp_path


RUN = ["run", "--output", "{tmp}/run", "--cache-dir", "{tmp}/cache"]
EMBED = ["embed", "--model", "{tmp}/damaged", "--input", "{tmp}/corpus.txt", "--output", "{tmp}/out.npy"]
MISTAKES = {
    "missing corpus": ([*RUN, "--corpus", "{tmp}/missing.txt"], "does not exist"),
    "empty corpus": ([*RUN, "--corpus", "{tmp}/empty.txt"], "no usable text"),
    "binary corpus": ([*RUN, "--corpus", "{tmp}/binary.txt"], "binary"),
    "bad teacher folder": ([*RUN, "--corpus", "{tmp}/corpus.txt", "--teacher", "{tmp}/not-a-model"], "not a model"),
    "unknown student": ([*RUN, "--corpus", "{tmp}/corpus.txt", "--students", "statc"], "unknown student"),
    "repeated student": ([*RUN, "--corpus", "{tmp}/corpus.txt", "--students", "static,static"], "more than once"),
    "unwritable output": (["run", "--corpus", "{tmp}/corpus.txt", "--output", "{tmp}/a-file/run"], "cannot be written"),
    "eval on a folder that is not a run": (["eval", "--run", "{tmp}/not-a-model"], "not a run folder"),
    "serve on a missing model": (["serve", "--model", "{tmp}/missing-export"], "does not exist"),
    "a corrupt export": (EMBED, "model.onnx"),
}


@pytest.mark.parametrize("mistake", list(MISTAKES))
def test_a_common_mistake_is_one_line_and_exit_2(files: Path, mistake: str) -> None:
    args, message = MISTAKES[mistake]
    result = CliRunner().invoke(main, [a.replace("{tmp}", str(files)) for a in args])
    lines = result.stderr.strip().splitlines()
    assert result.exit_code == 2, result.output
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], result.stderr
    assert not (files / "run" / "students").exists() and not (files / "cache").exists()
