"""The package's shape: subpackages import one way, modules have no import cycle, and training
does not load the analysis stack."""

from __future__ import annotations

import ast
import subprocess
import sys

from helpers import ROOT

PACKAGE = ROOT / "src" / "depthsweep"
TOP = "(top)"  # errors.py, files.py: imported by all, importing nothing of the package
# What each subpackage may import besides itself, lowest first: the README's layout section.
MAY_IMPORT = {
    TOP: set(),
    "nets": {TOP},
    "runs": {TOP},
    "training": {TOP, "nets", "runs"},
    "apps": {TOP, "nets", "runs", "training"},
    "analysis": {TOP, "nets", "runs", "training", "apps"},
    "tools": {TOP, "nets", "runs", "training"},
}


def modules() -> list[str]:
    """Every module of the package, dotted below depthsweep (training.train, errors)."""
    found = (p.relative_to(PACKAGE).with_suffix("") for p in PACKAGE.rglob("*.py"))
    return sorted(".".join(p.parts) for p in found if p.name != "__init__")


def package_of(module: str) -> str:
    return module.split(".")[0] if "." in module else TOP


def package_imports(module: str) -> tuple[set[str], set[str]]:
    """(modules of the package imported at the top level, ... imported inside a function)."""
    known = set(modules())
    tree = ast.parse((PACKAGE / f"{module.replace('.', '/')}.py").read_text())
    top_level = {id(node) for node in tree.body}
    found: tuple[set[str], set[str]] = (set(), set())
    for node in ast.walk(tree):
        names = []
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("depthsweep"):
            base = node.module.removeprefix("depthsweep").lstrip(".")
            # from depthsweep.analysis import plots (a module) or ... import analyze (a name)
            names = [f"{base}.{a.name}".lstrip(".") for a in node.names]
            names = [n if n in known else base for n in names]
        elif isinstance(node, ast.Import):
            names = [a.name.removeprefix("depthsweep.") for a in node.names]
            names = [n for n in names if n in known]
        found[id(node) not in top_level].update(n for n in names if n)
    return found


def test_the_import_parser_sees_imports():
    assert package_imports("training.train")[0] >= {"training.build", "runs.rundir"}
    assert package_imports("analysis.report")[0] >= {"analysis.plots", "files"}


def test_subpackages_import_one_way():
    assert set(map(package_of, modules())) == set(MAY_IMPORT)
    wrong = [
        f"{module} imports {imported}"
        for module in modules()
        for imported in set.union(*package_imports(module))
        if package_of(imported) not in MAY_IMPORT[package_of(module)] | {package_of(module)}
    ]
    assert not wrong


def test_the_package_has_no_import_cycle():
    graph = {m: set.union(*package_imports(m)) for m in modules()}
    done: set[str] = set()

    def visit(module: str, path: list[str]) -> None:
        assert module not in path, f"import cycle: {' -> '.join([*path, module])}"
        if module in done:
            return
        for imported in graph.get(module, ()):
            visit(imported, [*path, module])
        done.add(module)

    for module in graph:
        visit(module, [])


def test_no_import_of_the_package_is_deferred():
    deferred = {m: package_imports(m)[1] for m in modules() if package_imports(m)[1]}
    assert not deferred


def test_every_subpackage_says_what_it_holds_in_one_line():
    for init in PACKAGE.glob("*/__init__.py"):
        docstring = ast.get_docstring(ast.parse(init.read_text()))
        assert docstring and "\n" not in docstring, init


def test_training_loads_neither_pandas_nor_the_analysis():
    """matplotlib cannot be kept out: Lightning imports torchmetrics, which imports it."""
    code = (
        "import sys, depthsweep.training.train, experiments.run; "
        "print([m for m in sys.modules if m == 'pandas' or m.startswith('depthsweep.analysis')])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
