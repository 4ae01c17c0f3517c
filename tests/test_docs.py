"""The README and docs/ stay what a newcomer can use: short, every link alive, every Python example valid."""

from __future__ import annotations

import ast
import re
from pathlib import Path

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
