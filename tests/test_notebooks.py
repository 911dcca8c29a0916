"""The notebooks in ``notebooks/``: stored without outputs, and they run without error.

Executing them needs the ``notebooks`` extra (nbformat, nbclient, ipykernel) and is marked slow
(each notebook takes up to ~30 s in its quick mode on 2 cores). The check that the stored files
carry no outputs reads them as plain JSON and always runs.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

NOTEBOOK_DIR = Path(__file__).resolve().parents[1] / "notebooks"
NOTEBOOKS = sorted(NOTEBOOK_DIR.glob("[0-9][0-9]_*.ipynb"))
EXPECTED = ["01_quickstart.ipynb", "02_certificates_explained.ipynb", "03_toy_problems.ipynb", "04_hep_tasks.ipynb"]
CELL_TIMEOUT = 300  # seconds per cell; the quick runs need far less


def test_the_four_notebooks_are_there():
    assert [p.name for p in NOTEBOOKS] == EXPECTED


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_is_stored_without_outputs(path):
    """Diff-friendliness: no outputs, no execution counts, no per-user metadata."""
    nb = json.loads(path.read_text(encoding="utf-8"))
    assert nb["nbformat"] == 4
    assert set(nb["metadata"]) <= {"kernelspec", "language_info"}, nb["metadata"].keys()
    code_cells = [c for c in nb["cells"] if c["cell_type"] == "code"]
    assert code_cells, "a notebook without code"
    for cell in nb["cells"]:
        assert cell.get("metadata", {}) == {}, f"cell {cell.get('id')} carries metadata {cell['metadata']}"
        if cell["cell_type"] == "code":
            assert cell["outputs"] == [], f"cell {cell.get('id')} has stored outputs"
            assert cell["execution_count"] is None, f"cell {cell.get('id')} has an execution count"
    # each notebook reads its size switch and ends with a figure
    sources = ["".join(c["source"]) for c in code_cells]
    assert "LIPSURROGATE_NOTEBOOK_QUICK" in sources[0]
    assert "plt.show()" in sources[-1]


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_executes(path, tmp_path, monkeypatch):
    """Run the notebook top to bottom in a fresh kernel with the quick settings; any error fails."""
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel")

    monkeypatch.setenv("LIPSURROGATE_NOTEBOOK_QUICK", "1")
    monkeypatch.setenv("LIPSURROGATE_NOTEBOOK_DIR", str(tmp_path / "runs"))
    monkeypatch.setenv("MPLBACKEND", "module://matplotlib_inline.backend_inline")
    nb = nbformat.read(path, as_version=4)
    client = nbclient.NotebookClient(nb, timeout=CELL_TIMEOUT, kernel_name="python3",
                                     resources={"metadata": {"path": str(tmp_path)}})
    start = time.perf_counter()
    client.execute()  # raises CellExecutionError (with the traceback) on the first failing cell
    seconds = time.perf_counter() - start
    print(f"{path.name}: executed in {seconds:.1f} s")

    last = [c for c in nb.cells if c.cell_type == "code"][-1]
    assert any(o.get("output_type") == "display_data" and "image/png" in o.get("data", {}) for o in last.outputs), \
        "the last cell should draw a figure"
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs if o.get("output_type") == "error"]
    assert not errors
