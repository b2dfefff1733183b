"""notebooks/analysis.ipynb runs end to end on a fake sweep and draws both figures."""

from __future__ import annotations

import os
from pathlib import Path

import nbformat
from fakesweep import degradation_sweep
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "notebooks" / "analysis.ipynb"


def test_notebook_redraws_the_figures(tmp_path, monkeypatch):
    degradation_sweep(tmp_path / "sweep")
    monkeypatch.setenv("DEPTHSWEEP_SWEEP_DIR", str(tmp_path / "sweep"))
    # The kernel is a subprocess: make the package importable even without an install.
    path = [str(ROOT / "src"), os.environ.get("PYTHONPATH", "")]
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, path)))
    nb = nbformat.read(NOTEBOOK, as_version=4)
    NotebookClient(
        nb, kernel_name="python3", timeout=60, resources={"metadata": {"path": str(tmp_path)}}
    ).execute()

    outputs = {c.source.splitlines()[-1]: c.outputs for c in nb.cells if c.cell_type == "code"}
    images = [
        o
        for o in outputs["plots.figure6(metrics, ylim=(0, 20))"]
        if "image/png" in o.get("data", {})
    ]
    assert len(images) == 1
    assert [o for o in outputs["plots.error_vs_depth(summary)"] if "image/png" in o.get("data", {})]
    (verdict,) = outputs["print(analysis.verdict(summary))"]
    assert verdict.text.startswith("Degradation reproduced: plain training error rises")
    summary_html = outputs["summary"][0].data["text/html"]
    assert "arch=resnet,depth=56,seed=1" in summary_html
    # The notebook only reads the sweep: analyze() is the one that writes into it.
    assert not (tmp_path / "sweep" / "summary.csv").exists()
