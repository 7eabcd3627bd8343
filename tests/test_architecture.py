"""The floor plan: the import graph of emojicam/ read with ast (imports under TYPE_CHECKING, for annotations only,
left out) has no cycle, is at most 6 levels deep from errors to cli, and the core knows nothing about the command
line, windows or files; benchmarks/ use the core, not the command line."""

from __future__ import annotations

import ast
import functools
from pathlib import Path

from conftest import ROOT

PACKAGE = ROOT / "emojicam"
# the engine and the network, at the top level of the package
CORE = ("settings", "grid", "emoji_set", "model", "kernels", "scoring", "compositor", "device_frame", "lanes",
        "builder", "engine")
FEATURES = ("media", "live", "web", "bench")  # the feature packages: emojicam/media/, live/, web/, bench/
FRONT = ("cli", "__main__", "convert", *FEATURES)


def module_name(path: Path) -> str:
    """emojicam/media/reader.py -> "media.reader"; emojicam/cli.py -> "cli"; a package's __init__ -> its name."""
    parts = path.relative_to(PACKAGE).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" and len(parts) > 1 else parts)


def imported(path: Path) -> set[str]:
    """The emojicam modules a file imports ("media.reader", "engine"), anywhere in it, except inside
    `if TYPE_CHECKING:`; `from emojicam.media import reader` counts as media.reader."""
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                continue
            if isinstance(child, ast.ImportFrom) and child.module and child.module.split(".")[0] == "emojicam":
                base = child.module.split(".")[1:]
                found.update([".".join(base)] if base else [a.name for a in child.names])
                found.update(".".join([*base, a.name]) for a in child.names if base)  # a submodule, if it is one
            elif isinstance(child, ast.Import):
                found.update(a.name.split(".", 1)[1] for a in child.names if a.name.startswith("emojicam."))
            visit(child)

    visit(ast.parse(path.read_text()))
    return found


def graph() -> dict[str, set[str]]:
    """Each module of emojicam/ (subpackages too, dotted) and the modules it imports at run time."""
    paths = [p for p in PACKAGE.rglob("*.py") if "data" not in p.relative_to(PACKAGE).parts[:1]]
    modules = {module_name(p) for p in paths}
    return {module_name(p): (imported(p) & modules) - {module_name(p)} for p in paths}


def package(module: str) -> str:
    return module.split(".")[0]


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
    assert set(edges) >= {"media.reader", "live.window", "web.site", "bench.run"}, "the graph sees the subpackages"
    assert level("cli") <= 6, {m: level(m) for m in sorted(edges, key=level)}


def test_the_core_imports_no_feature_package_and_no_feature_package_imports_the_cli():
    edges = graph()
    for module in CORE:
        assert not {package(dep) for dep in edges[module]} & set(FRONT), (module, sorted(edges[module]))
    for module, deps in edges.items():
        if package(module) in FEATURES:
            assert "cli" not in deps and "convert" not in deps, (module, "a feature package imports the command line")
    assert not any("cli" in deps for module, deps in edges.items() if module != "__main__"), "only __main__ runs it"


def test_the_features_live_in_their_packages():
    """The map docs/architecture.md draws: no module of a feature left at the top level under its old name."""
    top = {p.stem for p in PACKAGE.glob("*.py")}
    assert not top & {"video", "video_reader", "video_writer", "capture", "mirror", "live", "terminal", "images",
                      "text", "web", "web_kernels", "bench", "bench_machine", "bench_peers", "bench_report", "tune"}
    for name in FEATURES:
        assert (PACKAGE / name / "__init__.py").is_file(), name


def test_benchmarks_use_the_core_not_the_command_line():
    for script in sorted((ROOT / "benchmarks").glob("*.py")):
        assert "cli" not in imported(script), script.name
