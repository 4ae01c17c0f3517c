"""`distill embed`: a file of texts to .npy or .jsonl, equal to the runtime's vectors, written atomically."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

import distill.runtime.embed
from distill.cli.commands import main
from distill.runtime import OnnxEmbedder
from tests.conftest import SENTENCES

TEXTS = [SENTENCES[0], "ünïcödé – text ✓", "", SENTENCES[5], "x " * 100]  # a blank line keeps its row


@pytest.fixture(scope="module")
def expected(export_dir: Path) -> np.ndarray:
    return OnnxEmbedder(export_dir).encode(TEXTS)


def _embed(export_dir: Path, input_path: Path, output_path: Path, *extra: str) -> str:
    args = ["embed", "--model", str(export_dir), "--input", str(input_path), "--output", str(output_path), *extra]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    return result.output


def test_txt_to_npy_one_row_per_line(export_dir: Path, expected: np.ndarray, tmp_path: Path) -> None:
    source = tmp_path / "texts.txt"
    source.write_bytes(("\r\n".join(TEXTS) + "\r\n").encode())  # CRLF and a final newline add no row
    output = _embed(export_dir, source, tmp_path / "out" / "vectors.npy", "--batch-size", "2")
    vectors = np.load(tmp_path / "out" / "vectors.npy")
    assert vectors.dtype == np.float32 and vectors.shape == (len(TEXTS), 16)
    np.testing.assert_allclose(vectors, expected, atol=1e-6)
    assert f"{len(TEXTS)} texts" in output


def test_jsonl_to_jsonl_keeps_index_and_text(export_dir: Path, expected: np.ndarray, tmp_path: Path) -> None:
    source = tmp_path / "texts.jsonl"
    source.write_text("\n\n".join(json.dumps({"id": i, "text": t}, ensure_ascii=False) for i, t in enumerate(TEXTS)))
    _embed(export_dir, source, tmp_path / "vectors.jsonl")
    records = [json.loads(line) for line in (tmp_path / "vectors.jsonl").read_text(encoding="utf-8").splitlines()]
    assert [r["index"] for r in records] == list(range(len(TEXTS)))
    assert [r["text"] for r in records] == TEXTS
    np.testing.assert_allclose(np.array([r["embedding"] for r in records]), expected, atol=1e-6)


def test_int8_is_close_to_fp32(export_dir: Path, expected: np.ndarray, tmp_path: Path) -> None:
    (tmp_path / "texts.txt").write_text("\n".join(TEXTS))
    _embed(export_dir, tmp_path / "texts.txt", tmp_path / "int8.npy", "--precision", "int8")
    int8 = np.load(tmp_path / "int8.npy")
    assert not np.array_equal(int8, expected)  # it really ran the other graph
    keep = np.linalg.norm(expected, axis=1) > 0  # the blank text has a zero vector in both
    cosines = (int8[keep] * expected[keep]).sum(axis=1)
    assert cosines.min() > 0.99


def test_chunks_join_in_order(export_dir: Path, expected: np.ndarray, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(distill.runtime.embed, "CHUNK", 2)
    (tmp_path / "texts.txt").write_text("\n".join(TEXTS))
    count, dim = distill.runtime.embed.embed_file(export_dir, tmp_path / "texts.txt", tmp_path / "v.npy")
    assert (count, dim) == (len(TEXTS), 16)
    np.testing.assert_allclose(np.load(tmp_path / "v.npy"), expected, atol=1e-6)


def test_a_failure_midway_leaves_no_output(export_dir: Path, tmp_path: Path, monkeypatch) -> None:
    calls = []
    encode = OnnxEmbedder.encode

    def fail_second_chunk(self: OnnxEmbedder, texts: list[str], batch_size: int = 32) -> np.ndarray:
        calls.append(len(texts))
        if len(calls) == 2:
            raise RuntimeError("interrupted")
        return encode(self, texts, batch_size)

    monkeypatch.setattr(distill.runtime.embed, "CHUNK", 2)
    monkeypatch.setattr(OnnxEmbedder, "encode", fail_second_chunk)
    (tmp_path / "texts.txt").write_text("\n".join(TEXTS))
    for suffix in (".npy", ".jsonl"):
        calls.clear()
        with pytest.raises(RuntimeError):
            distill.runtime.embed.embed_file(export_dir, tmp_path / "texts.txt", tmp_path / f"out{suffix}")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["texts.txt"]


@pytest.mark.parametrize(
    ("input_name", "content", "output_name", "message"),
    [
        ("missing.txt", None, "out.npy", "does not exist"),
        ("blank.txt", "\n  \n\n", "out.npy", "has no texts"),
        ("texts.txt", "a text\n", "out.csv", ".npy or .jsonl"),
        ("texts.csv", "a text\n", "out.npy", ".txt"),
        ("bad.jsonl", '{"text": "fine"}\n{"body": "no text"}\n', "out.npy", "line 2"),
        ("bad.jsonl", '{"text": "fine"}\nnot json\n', "out.jsonl", "line 2 is not JSON"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(
    export_dir: Path, tmp_path: Path, input_name: str, content: str | None, output_name: str, message: str
) -> None:
    if content is not None:
        (tmp_path / input_name).write_text(content)
    args = ["embed", "--model", str(export_dir), "--input", str(tmp_path / input_name), "--output",
            str(tmp_path / output_name)]  # fmt: skip
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 2 and message in result.output, result.output
    assert len(result.output.strip().splitlines()) == 1
    assert not (tmp_path / output_name).exists()


def test_a_folder_that_is_not_an_export_is_named(tmp_path: Path) -> None:
    (tmp_path / "texts.txt").write_text("a text\n")
    args = ["embed", "--model", str(tmp_path), "--input", str(tmp_path / "texts.txt"), "--output",
            str(tmp_path / "out.npy")]  # fmt: skip
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 2 and "not an exported student" in result.output
    assert not (tmp_path / "out.npy").exists()
