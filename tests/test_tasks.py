from pathlib import Path

import numpy as np
import pytest

from distill.errors import DistillError
from eval.tasks import read_sts, sts_spearman


def test_reads_both_layouts(tmp_path: Path) -> None:
    (tmp_path / "plain.tsv").write_text("a cat\ta dog\t3.5\nrain\tsun\t1\n")
    (tmp_path / "stsb.tsv").write_text("g\tf\t2012\t0001\t5.000\tA man.\tA man!\n" * 2)
    assert read_sts(tmp_path / "plain.tsv") == (["a cat", "rain"], ["a dog", "sun"], pytest.approx([3.5, 1.0]))
    first, second, gold = read_sts(tmp_path / "stsb.tsv")
    assert first == ["A man."] * 2 and second == ["A man!"] * 2 and gold.tolist() == [5.0, 5.0]


@pytest.mark.parametrize(("text", "message"), [("just one column\n", "line 1"), ("a\tb\t1\n", "fewer than two")])
def test_bad_files_are_clear_errors(tmp_path: Path, text: str, message: str) -> None:
    (tmp_path / "bad.tsv").write_text(text)
    with pytest.raises(DistillError, match=message):
        read_sts(tmp_path / "bad.tsv")
    with pytest.raises(DistillError, match="does not exist"):
        read_sts(tmp_path / "missing.tsv")


def test_spearman_is_100_when_cosines_rank_like_gold() -> None:
    angles = np.array([0.1, 0.5, 0.9, 1.3])

    def encode(texts: list[str]) -> np.ndarray:  # "a<i>" at angle 0, "b<i>" at angle i: cosine falls with i
        return np.stack([[1.0, 0.0] if t[0] == "a" else [np.cos(angles[int(t[1])]), np.sin(angles[int(t[1])])]
                         for t in texts])  # fmt: skip

    first, second = [f"a{i}" for i in range(4)], [f"b{i}" for i in range(4)]
    assert sts_spearman(encode, first, second, np.array([4.0, 3.0, 2.0, 1.0])) == pytest.approx(100.0)
    assert sts_spearman(encode, first, second, np.array([1.0, 2.0, 3.0, 4.0])) == pytest.approx(-100.0)
