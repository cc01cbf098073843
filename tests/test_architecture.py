"""The tree is the architecture: subpackages by responsibility, no import circles, the
package's own design documents only (docs/architecture.md). `lint-imports` (CI) checks the
layers; this file checks what that contract cannot express."""

from __future__ import annotations

import re
from pathlib import Path

import grimp
import pytest

SRC = Path(__file__).resolve().parent.parent / "src" / "hubcache"
REPO = SRC.parent.parent


def _cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for start in sorted(edges):
        if start in index:
            continue
        work = [(start, iter(sorted(edges[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(edges[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def test_cycle_finder_finds_a_cycle() -> None:
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_circles() -> None:
    graph = grimp.build_graph("hubcache")
    edges = {m: set(graph.find_modules_directly_imported_by(m)) for m in graph.modules}
    # the package's own __init__ re-exports the surface; a module importing `hubcache`
    # itself (cli/demo uses the public resolve) is not a circle through the layers
    for deps in edges.values():
        deps.discard("hubcache")
    assert _cycles(edges) == []


def test_subpackages_are_shallow_and_their_inits_empty() -> None:
    for init in SRC.glob("*/__init__.py"):
        if init.parent.name in ("tensorflow_hub", "kagglehub"):
            continue  # the public plug-in modules carry their own surface
        assert init.read_text().strip() == "", f"{init} must stay empty (cheap imports)"
        assert not list(init.parent.glob("*/__init__.py")), f"{init.parent} nests packages"


@pytest.mark.parametrize(
    "folder", ["src", "docs", "tests", "benchmarks", "scripts", "pyproject.toml", "README.md"]
)
def test_no_reference_to_documents_outside_the_repository(folder: str) -> None:
    """The repository must read on its own: no outside design file, nor its section numbers
    ("§5"), which name nothing a reader of the repository can open."""
    outside = re.compile(r"DESIGN(\.md| §)|NOTES\.md|\.\./shared|STYLE\.md|§ ?\d")
    top = REPO / folder
    offenders = [
        str(path.relative_to(REPO))
        for path in ([top] if top.is_file() else top.rglob("*"))
        if path.suffix in {".py", ".md", ".toml", ".sh"}
        and path != Path(__file__).resolve()
        and outside.search(path.read_text(errors="replace"))
    ]
    assert offenders == []


def test_every_setting_is_documented() -> None:
    """A variable the code reads and docs/configuration.md does not list is a setting
    nobody can find; this keeps the page and the code together."""
    read = set()
    for path in SRC.rglob("*.py"):
        read |= set(
            re.findall(r"[\"']((?:HUBCACHE|TFHUB|KAGGLE)[A-Z0-9_]*)[\"']", path.read_text())
        )
    read -= {"HUBCACHE_"}  # prefixes used to build names
    documented = (REPO / "docs" / "configuration.md").read_text()
    assert sorted(v for v in read if v not in documented) == []


def test_the_tests_readme_maps_every_subpackage_and_test_file() -> None:
    """tests/README.md tells a contributor which files to run for the part they changed; a
    subpackage or test file it does not name is one nobody will think of running."""
    readme = (REPO / "tests" / "README.md").read_text()
    missing = [f"{p.name}/" for p in SRC.iterdir() if (p / "__init__.py").exists()]
    missing = [name for name in missing if f"`{name}`" not in readme]
    missing += [p.name for p in (REPO / "tests").glob("test_*.py") if f"`{p.name}`" not in readme]
    assert missing == [], f"add these to tests/README.md: {missing}"
