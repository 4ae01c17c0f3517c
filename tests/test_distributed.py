"""Several processes: `distill run --processes 2` on the CPU (gloo), against the same run in one process."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import distill.data.targets as targets_module
from distill import distributed
from distill.data.corpus import assign_splits
from distill.data.targets import Targets, build_targets
from distill.data.textstore import write_store
from distill.runfolder import read_summary
from distill.teacher.model import Teacher
from tests.families import save_teacher, tiny_teacher


def _corpus(n: int = 600) -> list[str]:
    """`n` distinct sentences of varied length from a small vocabulary."""
    rng = np.random.default_rng(0)
    words = "the cat dog river city old new green small large sat ran flows plays near over under into music rain"
    words = f"{words} train school market park museum quickly slowly every morning after before".split()
    return [" ".join(rng.choice(words, size=rng.integers(4, 24))) + f" {i}." for i in range(n)]


def _run(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    result = subprocess.run([sys.executable, "-m", "distill.cli", *args], cwd=cwd, env=env, capture_output=True,
                            text=True, timeout=600)  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    return result


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    work = tmp_path_factory.mktemp("distributed")
    texts = _corpus()
    (work / "corpus.txt").write_text("\n".join(texts) + "\n")
    save_teacher(tiny_teacher("bert", texts), work / "teacher")
    return work, work / "teacher"


def test_two_processes_make_the_same_targets_and_train_as_well_as_one(setup: tuple[Path, Path]) -> None:
    work, teacher = setup
    # NOTE: students that start far from the teacher, so training has something to agree on
    # and chunks of 128 texts, so that both processes extract some
    settings = 'chunk-texts = 128\n[static]\ninit = "vocab"\nlr = 0.05\n[transformer]\nlayers = [1]\n'
    (work / "students.toml").write_text(settings)
    common = ["run", "--config", str(work / "students.toml"), "--teacher", str(teacher), "--corpus",
              str(work / "corpus.txt"), "--device", "cpu", "--epochs", "3", "--token-targets", "store"]  # fmt: skip
    _run([*common, "--output", str(work / "one"), "--cache-dir", str(work / "cache-one")], work)
    two = _run([*common, "--output", str(work / "two"), "--cache-dir", str(work / "cache-two"), "--processes", "2"],
               work)  # fmt: skip
    assert "2 process(es)" in two.stdout
    one_summary, two_summary = read_summary(work / "one"), read_summary(work / "two")
    assert two_summary["processes"] == 2 and one_summary["processes"] == 1
    a, b = Targets.open(Path(one_summary["targets"])), Targets.open(Path(two_summary["targets"]))
    assert list(a.texts) == list(b.texts) and np.array_equal(a.split, b.split)
    assert np.abs(np.asarray(a.sentence_vectors) - np.asarray(b.sentence_vectors)).max() <= 1e-3
    assert np.array_equal(a.token_ids, b.token_ids)
    assert np.abs(np.asarray(a.token_vectors, np.float32) - np.asarray(b.token_vectors, np.float32)).max() <= 1e-3
    for one, two in zip(one_summary["students"], two_summary["students"], strict=True):
        assert one["name"] == two["name"]
        assert abs(one["valid_fidelity"] - two["valid_fidelity"]) <= 0.01, (one, two)
    static = two_summary["students"][0]
    assert static["valid_fidelity"] > static["start_fidelity"] + 0.02  # training moved it, in two processes too
    metrics = (work / "two" / "train" / "static" / "metrics.jsonl").read_text().splitlines()
    assert len(metrics) == 1 + 3  # rank 0 alone logs: the start and one line an epoch


def test_chunks_are_shared_out_by_rank_and_a_killed_run_resumes_with_any_number_of_processes(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    texts = _corpus(300)
    teacher: Teacher = tiny_teacher("bert", texts)
    split = assign_splits(texts)
    store = write_store(texts, tmp_path)
    monkeypatch.setattr(targets_module, "CHUNK_TEXTS", 40)
    made: list[int] = []
    real = targets_module._extract_chunk

    def counted(teacher, chunk, *args, **kwargs):
        made.append(texts.index(chunk[0]) // 40)
        return real(teacher, chunk, *args, **kwargs)

    monkeypatch.setattr(targets_module, "_extract_chunk", counted)
    # rank 1 of 2 makes its chunks, then the run is killed before rank 0 made any
    monkeypatch.setattr(distributed, "group", lambda: distributed.Group(rank=1, world=2))
    monkeypatch.setattr(distributed, "barrier", lambda: (_ for _ in ()).throw(KeyboardInterrupt))
    with pytest.raises(KeyboardInterrupt):
        build_targets(teacher, store, split, tmp_path)
    assert made == [1, 3, 5, 7]
    # the same run again in one process makes only what is missing
    made.clear()
    monkeypatch.setattr(distributed, "group", lambda: distributed.Group())
    monkeypatch.setattr(distributed, "barrier", lambda: None)
    built = build_targets(teacher, store, split, tmp_path)
    assert made == [0, 2, 4, 6]
    np.testing.assert_allclose(built.sentence_vectors, teacher.sentence_vectors(texts), atol=1e-5)


def test_processes_flag_is_checked_and_stripped() -> None:
    from distill.cli.commands import _without_processes

    assert _without_processes(["run", "--processes", "2", "--epochs", "1", "--processes=3"]) == [
        "run", "--epochs", "1",
    ]  # fmt: skip
