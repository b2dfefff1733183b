"""The package's shape: imports run one way, and training does not load the analysis stack."""

from __future__ import annotations

import ast
import subprocess
import sys

from helpers import ROOT

PACKAGE = ROOT / "src" / "depthsweep"
# Hydra loads this callback before a sweep's runs; it imports the analysis only when they end.
DEFERRED_ON_PURPOSE = {"hydra_callbacks"}
ANALYSIS = ["analysis", "plots", "report", "diagnostics", "diagnostic_plots"]


def package_imports(module: str) -> tuple[set[str], set[str]]:
    """(modules of the package imported at the top level, ... imported inside a function)."""
    tree = ast.parse((PACKAGE / f"{module}.py").read_text())
    top_level = {id(node) for node in tree.body}
    found: tuple[set[str], set[str]] = (set(), set())
    for node in ast.walk(tree):
        names = []
        if (
            isinstance(node, ast.ImportFrom)
            and node.module
            and node.module.startswith("depthsweep")
        ):
            names = [node.module.removeprefix("depthsweep").lstrip(".")]
            if not names[0]:  # from depthsweep import a, b
                names = [alias.name for alias in node.names]
        elif isinstance(node, ast.Import):
            names = [
                a.name.removeprefix("depthsweep.") for a in node.names if "depthsweep." in a.name
            ]
        found[id(node) not in top_level].update(n for n in names if n)
    return found


def modules() -> list[str]:
    return sorted(p.stem for p in PACKAGE.glob("*.py") if p.stem != "__init__")


def test_the_package_has_no_import_cycle():
    graph = {m: package_imports(m)[0] | package_imports(m)[1] for m in modules()}
    assert graph["train"] and graph["report"] >= {"analysis", "plots"}  # the parser sees imports
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


def test_no_import_of_the_package_is_deferred_to_break_a_cycle():
    deferred = {m: package_imports(m)[1] for m in modules() if package_imports(m)[1]}
    assert set(deferred) == DEFERRED_ON_PURPOSE, deferred


def test_training_loads_neither_pandas_nor_the_analysis():
    """matplotlib cannot be kept out: Lightning imports torchmetrics, which imports it."""
    analysis = ["pandas", *(f"depthsweep.{m}" for m in ANALYSIS)]
    code = (
        "import sys, depthsweep.train, experiments.run; "
        f"print([m for m in {analysis!r} if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
