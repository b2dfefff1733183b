"""notebooks/analysis.ipynb runs end to end: the sweep figures on a fake sweep, and the
diagnostics on real (tiny) runs."""

from __future__ import annotations

import os
from pathlib import Path

import nbformat
import pytest
from fakesweep import degradation_sweep
from helpers import ROOT, train_tiny
from nbclient import NotebookClient

from depthsweep.analysis import summaries
from depthsweep.training.config import compose_config

NOTEBOOK = ROOT / "notebooks" / "analysis.ipynb"
pytestmark = pytest.mark.slow  # a Jupyter kernel


def execute(sweep: Path | None, cwd: Path, monkeypatch, data_root: Path | None = None):
    """Run the notebook with its kernel in `cwd`, on `sweep` (None: the notebook's default)."""
    if sweep is None:
        monkeypatch.delenv("DEPTHSWEEP_SWEEP_DIR", raising=False)
    else:
        monkeypatch.setenv("DEPTHSWEEP_SWEEP_DIR", str(sweep))
    if data_root is not None:
        monkeypatch.setenv("DEPTHSWEEP_DATA_ROOT", str(data_root))
    # The kernel is a subprocess: make the package importable even without an install.
    path = [str(ROOT / "src"), os.environ.get("PYTHONPATH", "")]
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, path)))
    nb = nbformat.read(NOTEBOOK, as_version=4)
    NotebookClient(
        nb, kernel_name="python3", timeout=120, resources={"metadata": {"path": str(cwd)}}
    ).execute()
    return nb


def code_outputs(nb) -> dict[str, list]:
    """Each code cell's outputs, keyed by the cell's last line."""
    return {c.source.splitlines()[-1]: c.outputs for c in nb.cells if c.cell_type == "code"}


def images(outputs: list) -> list:
    return [o for o in outputs if "image/png" in o.get("data", {})]


def test_notebook_redraws_the_figures(tmp_path, monkeypatch):
    """By default, of the README's CPU smoke sweep (multirun/smoke, from notebooks/, where Jupyter
    runs the kernel); Figure 6 on an axis that fits its curves, not the paper's fixed one."""
    assert compose_config(["experiment=smoke"], hydra=True).hydra.sweep.dir == "multirun/smoke"
    degradation_sweep(tmp_path / "multirun" / "smoke")
    (tmp_path / "notebooks").mkdir()
    nb = execute(None, tmp_path / "notebooks", monkeypatch)
    outputs = code_outputs(nb)
    (figure6,) = [c.source for c in nb.cells if "plots.figure6(" in c.source]
    assert "ylim" not in figure6.splitlines()[-1]
    assert len(images(outputs["plots.figure6(metrics)"])) == 1
    assert len(images(outputs["plots.error_vs_depth(summary)"])) == 1
    (verdict,) = outputs["print(summaries.verdict(summary))"]
    sweep = tmp_path / "multirun" / "smoke"
    expected = summaries.verdict(summaries.summarize(*summaries.load_sweep(sweep)))
    assert verdict.text == expected + "\n"
    summary_html = outputs["summary"][0].data["text/html"]
    assert "arch=resnet,depth=56,seed=1" in summary_html
    # The notebook only reads the sweep: analyze() is the one that writes into it.
    assert not (sweep / "summary.csv").exists()


def test_notebook_draws_the_diagnostics_of_real_runs(fake_cifar, tmp_path, monkeypatch):
    """As the README has it: runs trained from the repository root with the default, relative
    data.root, the notebook's kernel in notebooks/ and no DEPTHSWEEP_DATA_ROOT (the runs record
    the folder they read, absolute)."""
    monkeypatch.chdir(tmp_path)  # where `data/` is: the fake "repository root"
    relative = fake_cifar.relative_to(tmp_path)
    sweep = tmp_path / "multirun" / "sweep"
    train_tiny(sweep / "plain-8", relative, "arch=plain", "depth=8")
    train_tiny(sweep / "resnet-8", relative, "arch=resnet", "depth=8")
    train_tiny(sweep / "resnet-8-zi", relative, "depth=8", "arch.zero_init_residual=true")
    (tmp_path / "notebooks").mkdir()
    monkeypatch.delenv("DEPTHSWEEP_DATA_ROOT", raising=False)
    nb = execute(sweep, tmp_path / "notebooks", monkeypatch)
    cells = [
        c for c in nb.cells if c.cell_type == "code" and "display(diagnostic_plots." in c.source
    ]
    assert len(cells) == 4
    for cell in cells:
        assert len(images(cell.outputs)) == 1, cell.source


def test_the_notebook_says_how_to_run_it_as_the_readme_does():
    """Its first cell's commands are the README's: `--output`, never `--inplace`, which would
    rewrite the tracked notebook and mark every later run's worktree dirty."""

    def commands(text: str) -> str:
        start = text.index("```\njupyter execute")
        return text[start : text.index("```", start + 3)]

    first = nbformat.read(NOTEBOOK, as_version=4).cells[0].source
    assert commands(first) == commands((ROOT / "README.md").read_text())
    assert "--inplace" not in first
