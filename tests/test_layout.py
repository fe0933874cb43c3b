"""The house rules that keep the code readable: the layout in docs/development.md is the tree,
every app module has its unit tests, and no module, class or function grows past what one
reading holds."""
from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
MODULES = sorted((ROOT / "app").glob("*.py"))
LIMITS = {"module": 250, "class": 160, "function": 40}


LAYOUT = ROOT / "docs" / "development.md"  # linked from the README


def layout() -> list[str]:
    """The paths the layout section names, in order."""
    section = LAYOUT.read_text().split("## Layout", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"^    (\S+)", section, re.M)


def test_the_layout_names_every_app_module_and_only_what_exists():
    named = layout()
    assert [p for p in named if not (ROOT / p).exists()] == [], "named in the layout, not in the tree"
    assert [m.relative_to(ROOT).as_posix() for m in MODULES if m.relative_to(ROOT).as_posix() not in named] == []


@pytest.mark.parametrize("module", MODULES, ids=lambda m: m.name)
def test_every_app_module_has_its_unit_tests(module):
    name = "app" if module.name == "__init__.py" else module.stem
    assert (ROOT / "tests" / f"test_{name}.py").exists()


def too_long(path: Path) -> list[str]:
    """The units of ``path`` over their limit, as ``kind name lines``."""
    source = path.read_text()
    found = [f"module {path.name} {len(source.splitlines())}"] if len(source.splitlines()) > LIMITS["module"] else []
    for node in ast.walk(ast.parse(source)):
        kind = ("class" if isinstance(node, ast.ClassDef) else
                "function" if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) else None)
        if kind and (size := node.end_lineno - node.lineno + 1) > LIMITS[kind]:  # type: ignore[operator]
            found.append(f"{kind} {node.name} {size}")
    return found


@pytest.mark.parametrize("module", MODULES, ids=lambda m: m.name)
def test_no_module_class_or_function_is_over_its_limit(module):
    assert too_long(module) == []


def test_the_limit_check_finds_a_long_function(tmp_path):
    long = tmp_path / "long.py"
    long.write_text("def f():\n" + "    x = 1\n" * LIMITS["function"])
    assert too_long(long) == ["function f 41"]


def test_the_readme_links_to_the_layout():
    assert "](docs/development.md)" in (ROOT / "README.md").read_text()


PAGES = [ROOT / "README.md", ROOT / "SECURITY.md", *sorted((ROOT / "docs").glob("*.md"))]


def anchors(page: Path) -> set[str]:
    """The anchors of a Markdown page's headings, as GitHub makes them."""
    titles = re.findall(r"^#+ (.+)$", page.read_text(), re.M)
    return {re.sub(r"[^\w\- ]", "", t.lower()).replace(" ", "-") for t in titles}


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_every_link_of_the_pages_leads_somewhere(page):
    broken = []
    for target in re.findall(r"\]\(([^)\s]+)\)", page.read_text()):
        if re.match(r"https?:", target):
            continue
        path, _, anchor = target.partition("#")
        linked = (page.parent / path).resolve() if path else page
        if not linked.exists() or (anchor and anchor not in anchors(linked)):
            broken.append(target)
    assert broken == []
