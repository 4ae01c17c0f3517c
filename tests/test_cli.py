"""Bad input ends with one line on stderr and exit status 2, never a traceback."""

import re
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from distill.cli.commands import main


def _run(args: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "distill.cli", *args], capture_output=True, text=True, timeout=300)


@pytest.fixture()
def small_corpus(tmp_path: Path) -> Path:
    path = tmp_path / "corpus.txt"
    path.write_text("\n".join(f"this is sentence number {i} about a topic" for i in range(50)))
    return path


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--teacher", "./no/such/folder"], "does not exist"),
        (["--teacher", "{tmp}"], "not a model folder"),
        (["--corpus", "{tmp}/empty.txt"], "empty"),
        (["--corpus", "{tmp}/binary.txt"], "binary"),
        (["--students", "static,nope"], "unknown student"),
        (["--epochs", "0"], "epochs"),
        (["--batch-size", "-1"], "batch-size"),
        (["--config", "{tmp}/missing.toml"], "config file"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(tmp_path: Path, small_corpus: Path, args: list[str], message: str) -> None:
    (tmp_path / "empty.txt").write_text("\n\n   \n")
    (tmp_path / "binary.txt").write_bytes(b"\x00\xff" * 64)
    args = [a.replace("{tmp}", str(tmp_path)) for a in args]
    defaults = ["--corpus", str(small_corpus), "--output", str(tmp_path / "run"), "--cache-dir", str(tmp_path / "c")]
    result = CliRunner().invoke(main, ["run", *defaults, *args])
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert "Traceback" not in result.output
    assert not (tmp_path / "run" / "students").exists()


def test_unknown_config_key_is_named(tmp_path: Path) -> None:
    (tmp_path / "c.toml").write_text("epochz = 3\n")
    result = CliRunner().invoke(main, ["run", "--config", str(tmp_path / "c.toml")])
    assert result.exit_code == 2 and "epochz" in result.output


def test_every_command_has_help() -> None:
    for command in ([], ["run"], ["targets"], ["train"]):
        result = CliRunner().invoke(main, [*command, "--help"])
        assert result.exit_code == 0 and "Usage" in result.output


TRAINING_FLAGS = {"--output", "--index", "--workers", "--epochs", "--batch-size", "--lr", "--patience", "--seed",
                  "--loss", "--hidden-loss-weight", "--similarity-weight", "--index-weight", "--rank-weight",
                  "--rank-temperature", "--matryoshka", "--matryoshka-weight"}  # fmt: skip
TARGET_FLAGS = {"--config", "--teacher", "--prompt", "--prompt-text", "--device", "--precision", "--processes",
                "--corpus", "--limit", "--max-length", "--augment", "--mix", "--mix-share", "--passages",
                "--token-targets", "--teacher-batch-tokens", "--students", "--cache-dir"}  # fmt: skip


def _flags(command: str) -> set[str]:
    """The long flags a command's --help lists."""
    result = CliRunner().invoke(main, [command, "--help"])
    return set(re.findall(r"^  (?:-\w, )?(--[\w-]+)", result.output, re.M))


def test_targets_takes_only_the_settings_that_shape_the_targets() -> None:
    """`distill targets` lists no training flag (they would do nothing there); `run` and `train` list both kinds."""
    assert _flags("targets") >= TARGET_FLAGS and not TRAINING_FLAGS & _flags("targets")
    for command in ("run", "train"):
        assert _flags(command) >= TARGET_FLAGS | TRAINING_FLAGS
    result = CliRunner().invoke(main, ["targets", "--epochs", "3"])
    assert result.exit_code == 2 and "--epochs" in result.output


def test_every_kind_of_task_is_in_every_tasks_help() -> None:
    """`--tasks` of run, train and eval names every SPEC that eval.suite reads: passages:PATH and a bare PATH too."""
    from eval.collection import COLLECTION
    from eval.suite import BUILT, KINDS

    for command in ("run", "train", "eval"):
        output = CliRunner().invoke(main, [command, "--help"]).output
        text = " ".join(output[output.index("--tasks SPEC") :].split())
        text = text[: text.index(" --", 1)]  # this option's help alone
        for kind in (*KINDS, *BUILT):
            assert f"{kind}: " in text, (command, kind)
        for spec in ("'default'", f"'{COLLECTION}'", "KIND:PATH", "PATH (the kind its layout says", "'none'"):
            assert spec in text, (command, spec)


def test_a_real_process_prints_one_line_without_traceback(tmp_path: Path) -> None:
    done = _run(["run", "--teacher", str(tmp_path / "missing"), "--output", str(tmp_path / "r")])
    assert done.returncode == 2
    assert done.stderr.strip().count("\n") == 0 and done.stderr.startswith("error:")
