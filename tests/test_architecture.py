"""The floor plan: the import graph of emojicam/ read with ast (imports under TYPE_CHECKING, for annotations only,
left out) has no cycle, is at most 6 levels deep from errors to cli, and the core knows nothing about the command
line, windows or files; benchmarks/ use the core, not the command line."""

from __future__ import annotations

import ast
import functools
from pathlib import Path

from conftest import ROOT

PACKAGE = ROOT / "emojicam"
CORE = ("settings", "grid", "emoji_set", "model", "kernels", "scoring", "compositor", "device_frame", "lanes",
        "builder", "engine")
FRONT = ("cli", "__main__", "convert", "live", "terminal", "mirror", "video", "video_reader", "video_writer",
         "capture", "images", "text", "web", "bench")


def imported(path: Path) -> set[str]:
    """The emojicam modules a file imports, anywhere in it, except inside `if TYPE_CHECKING:`."""
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                continue
            if isinstance(child, ast.ImportFrom) and child.module and child.module.split(".")[0] == "emojicam":
                parts = child.module.split(".")
                found.update([parts[1]] if len(parts) > 1 else [a.name for a in child.names])
            elif isinstance(child, ast.Import):
                found.update(a.name.split(".")[1] for a in child.names if a.name.startswith("emojicam."))
            visit(child)

    visit(ast.parse(path.read_text()))
    return found


def graph() -> dict[str, set[str]]:
    modules = {p.stem for p in PACKAGE.glob("*.py")}
    return {p.stem: (imported(p) & modules) - {p.stem} for p in PACKAGE.glob("*.py")}


def test_no_module_imports_one_that_imports_it_back():
    edges, cycles = graph(), []

    def walk(module: str, path: tuple[str, ...]) -> None:
        for dep in sorted(edges[module]):
            if dep in path:
                cycles.append((*path[path.index(dep):], dep))
            elif dep not in done:
                walk(dep, (*path, dep))
        done.add(module)

    done: set[str] = set()
    for module in sorted(edges):
        walk(module, (module,))
    assert cycles == [], " ; ".join(" -> ".join(c) for c in cycles)


def test_the_graph_is_at_most_six_levels_from_errors_to_cli():
    edges = graph()

    @functools.cache
    def level(module: str) -> int:
        return 1 + max((level(dep) for dep in edges[module]), default=0)

    assert level("errors") == 1 and edges["errors"] == set()
    assert level("cli") <= 6, {m: level(m) for m in sorted(edges, key=level)}


def test_the_core_knows_nothing_of_the_command_line_windows_or_files():
    edges = graph()
    for module in CORE:
        assert not edges[module] & set(FRONT), (module, sorted(edges[module] & set(FRONT)))
    assert not any("cli" in deps for module, deps in edges.items() if module != "__main__"), "only __main__ runs it"


def test_benchmarks_use_the_core_not_the_command_line():
    for script in sorted((ROOT / "benchmarks").glob("*.py")):
        assert "cli" not in imported(script), script.name
