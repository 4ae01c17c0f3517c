"""The README and docs/ stay what a newcomer can use: short, every link alive, every Python example valid, every
figure of the default run written by `make docs` from the run kept in docs/results/."""

from __future__ import annotations

import ast
import json
import re
import shutil
from pathlib import Path

import pytest

from distill.errors import DistillError
from eval.published import BLOCK, default_recipe_mismatch, keep_default, publish

ROOT = Path(__file__).parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"\]\(([^)\s#]+)(?:#[^)]*)?\)")  # [text](target) and ![alt](target), anchors dropped
PYTHON = re.compile(r"```python\n(.*?)```", re.DOTALL)


def test_the_readme_is_at_most_250_lines() -> None:
    lines = len((ROOT / "README.md").read_text().splitlines())
    assert lines <= 250, f"README.md has {lines} lines; move depth to docs/"


def test_every_relative_link_points_to_a_file_that_exists() -> None:
    broken = []
    for page in PAGES:
        for target in LINK.findall(page.read_text()):
            if not re.match(r"[a-z]+:", target) and not (page.parent / target).exists():
                broken.append(f"{page.relative_to(ROOT)} -> {target}")
    assert not broken, "broken links:\n" + "\n".join(broken)


def test_every_python_example_parses() -> None:
    for page in PAGES:
        for block in PYTHON.findall(page.read_text()):
            ast.parse(block, filename=str(page.relative_to(ROOT)))


def test_the_link_finder_finds_links_and_images() -> None:
    text = "see [docs](docs/a.md#x), ![plot](docs/p.png) and [site](https://example.com)"
    assert LINK.findall(text) == ["docs/a.md", "docs/p.png", "https://example.com"]


# The figures in README.md and docs/: every generated block is what the runs kept in docs/results/ give.

KEPT = ROOT / "docs" / "results" / "default"


def copy_pages(to: Path) -> Path:
    """README.md, docs/ (kept runs included) and configs/ in a temporary repository."""
    to.mkdir(exist_ok=True)
    shutil.copy(ROOT / "README.md", to / "README.md")
    shutil.copytree(ROOT / "docs", to / "docs")
    shutil.copytree(ROOT / "configs", to / "configs")
    return to


def test_every_generated_block_is_what_the_kept_runs_give() -> None:
    differing = publish(ROOT, check=True)
    assert not differing, "blocks that differ from docs/results (run make docs):\n" + "\n".join(differing)


def test_the_pages_show_the_kept_default_run_where_a_user_looks() -> None:
    names = {(page.name, m["name"]) for page in PAGES for m in BLOCK.finditer(page.read_text())}
    expected = {("README.md", "headline"), ("README.md", "headline-notes"), ("README.md", "collection"),
                ("evaluation.md", "fidelity"), ("evaluation.md", "speed"), ("evaluation.md", "tasks"),
                ("export-and-runtime.md", "int8"), ("students.md", "distill-time")}  # fmt: skip
    assert expected <= names, f"missing generated blocks: {sorted(expected - names)}"


def test_a_figure_changed_by_hand_is_named_and_make_docs_writes_it_back(tmp_path: Path) -> None:
    root = copy_pages(tmp_path)
    readme = (root / "README.md").read_text()
    row = next(line for line in readme.splitlines() if line.startswith("| static | "))
    doctored = row.replace("| static | ", "| static | 1", 1)  # one figure of the headline table, as a typo would
    (root / "README.md").write_text(readme.replace(row, doctored))
    assert publish(root, check=True) == ["README.md: headline from docs/results/default"]
    assert doctored in (root / "README.md").read_text(), "--check must write nothing"
    publish(root)
    assert (root / "README.md").read_text() == readme


def test_a_new_kept_report_changes_the_blocks_that_show_it(tmp_path: Path) -> None:
    root = copy_pages(tmp_path)
    report = json.loads((KEPT / "report.json").read_text())
    report["students"]["transformer"]["fidelity"]["test"]["cosine_mean"] = 0.5
    (root / "docs" / "results" / "default" / "report.json").write_text(json.dumps(report))
    assert publish(root, check=True) == [
        "README.md: headline-notes from docs/results/default",
        "README.md: repeat-line from docs/results/default and docs/results/default-repeat",
        "docs/evaluation.md: fidelity from docs/results/default",
        "docs/evaluation.md: speed from docs/results/default",
        "docs/evaluation.md: repeat from docs/results/default and docs/results/default-repeat",
    ]
    publish(root)
    assert "transformer 0.5000" in (root / "README.md").read_text()


def test_the_kept_report_is_the_default_recipe_and_its_summary_the_same_run() -> None:
    summary, report = json.loads((KEPT / "summary.json").read_text()), json.loads((KEPT / "report.json").read_text())
    assert default_recipe_mismatch(ROOT, summary) is None
    assert [s["name"] for s in summary["students"]] == ["static", "transformer", "tokengen"]
    assert summary["teacher"] == report["teacher"]["details"]["model"] == "sentence-transformers/all-MiniLM-L6-v2"
    for student in summary["students"]:  # the report measured the students this summary trained
        cosine = report["students"][student["name"]]["fidelity"]["test"]["cosine_mean"]
        assert abs(cosine - student["test_fidelity"]) < 1e-6, student["name"]
    source = json.loads((KEPT / "source.json").read_text())
    assert source["commands"] == ["make distill", "make eval"] and source["created"] == report["created"]


def test_keeping_a_run_copies_its_report_and_refuses_another_recipe(tmp_path: Path) -> None:
    root, run = copy_pages(tmp_path / "repo"), tmp_path / "run"
    run.mkdir()
    for name in ("report.json", "summary.json", "pareto.png"):
        shutil.copy(KEPT / name, run / name)
    shutil.rmtree(root / "docs" / "results" / "default")
    keep_default(root, run)
    kept = root / "docs" / "results" / "default"
    assert (kept / "report.json").read_bytes() == (KEPT / "report.json").read_bytes()
    assert json.loads((kept / "source.json").read_text())["run"] == str(run)
    assert publish(root, check=True) == []
    summary = json.loads((run / "summary.json").read_text())
    (run / "summary.json").write_text(json.dumps({**summary, "students": summary["students"][:1]}))
    with pytest.raises(DistillError, match=r"not a run of configs/default\.toml"):
        keep_default(root, run)


def test_an_unknown_block_is_one_clear_error(tmp_path: Path) -> None:
    root = copy_pages(tmp_path)
    marker = "<!-- generated by make docs: nonesuch from docs/results/default -->\n<!-- end of generated -->\n"
    (root / "README.md").write_text((root / "README.md").read_text() + marker)
    with pytest.raises(DistillError, match="no generated block is named 'nonesuch'"):
        publish(root, check=True)


def test_the_readme_names_no_issue_or_internal_script_and_no_page_a_run_users_lack() -> None:
    readme = (ROOT / "README.md").read_text()
    assert not re.search(r"\bissue \d+", readme, re.IGNORECASE), "issue numbers belong in docs/experiments.md"
    assert "eval.experiments" not in readme, "internal scripts belong in docs/"
    for page in PAGES:
        assert "runs/final" not in page.read_text(), f"{page.name} cites runs/final; users have runs/default"


def test_a_fresh_runs_figures_are_compared_with_the_kept_ones_speeds_apart(tmp_path: Path) -> None:
    """`--compare`: a fresh clone's run must give the kept figures at printed precision; its speeds only move."""
    from eval.published import compare_run

    report = json.loads((ROOT / "docs" / "results" / "default" / "report.json").read_text())
    (tmp_path / "report.json").write_text(json.dumps(report))
    assert compare_run(ROOT, tmp_path)[0] == []
    report["students"]["static"]["latency"]["torch"]["speedup"]["batch32_speedup"] *= 1.5
    (tmp_path / "report.json").write_text(json.dumps(report))
    differing, speeds = compare_run(ROOT, tmp_path)
    assert differing == [] and any(line.startswith("fidelity, static, b32 x:") for line in speeds)
    report["students"]["static"]["fidelity"]["test"]["cosine_mean"] -= 0.001
    (tmp_path / "report.json").write_text(json.dumps(report))
    assert any(line.startswith("fidelity, static, cosine:") for line in compare_run(ROOT, tmp_path)[0])


def test_the_same_run_twice_gives_its_speeds_as_the_noise_to_read_them_with() -> None:
    """The `repeat` blocks: figures that came out the same are counted, and each served speed given in both runs."""
    from eval.blocks import Kept, repeat, repeat_line

    report = json.loads((ROOT / "docs" / "results" / "default" / "report.json").read_text())
    source = {"created": "2026-12-07T00:00:00+00:00", "machine": {"processor": "x", "threads": 2, "torch": "t"},
              "commands": ["git clone", "make distill", "make eval"]}  # fmt: skip
    again = json.loads(json.dumps(report))
    again["students"]["transformer"]["latency"]["onnx_int8"]["speedup"]["batch32_speedup"] *= 0.5
    kept, twice = Kept("a", {}, report, source), Kept("b", {}, again, source)
    lines = repeat(kept, twice)
    assert any(line.startswith("| transformer |") and line.endswith("| 0.50 |") for line in lines)
    assert "came out the same" in lines[2] and "these differ" not in lines[2]
    assert "every other figure of these tables again" in repeat_line(kept, twice)[0]
    assert "within 50%" in repeat_line(kept, twice)[0]
    again["students"]["static"]["fidelity"]["test"]["cosine_mean"] += 0.01
    assert "these differ: fidelity, static, cosine" in repeat(kept, Kept("b", {}, again, source))[2]
