"""Every notebook in notebooks/ is stored with the outputs of a run of its current jupytext source (so its
figures show when browsed; notebooks/store_outputs.py writes them) and still executes top to bottom in its
fast mode (SMOKE=1)."""

import base64
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
jupytext = pytest.importorskip("jupytext")

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("*.ipynb"))
MAX_BYTES = 250_000  # per stored notebook (PNG figures at 80 dpi)


def test_every_source_has_its_notebook():
    sources = sorted(NOTEBOOKS[0].parent.glob("[0-9][0-9]_*.py"))  # notebooks/store_outputs.py: sources()
    assert [p.stem for p in sources] == [p.stem for p in NOTEBOOKS]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_is_stored_with_the_outputs_of_its_source(path):
    nb = nbformat.read(path, as_version=4)
    source = jupytext.read(path.with_suffix(".py"))
    assert [(c.cell_type, c.source) for c in nb.cells] == [(c.cell_type, c.source) for c in source.cells], \
        f"{path.name} differs from {path.stem}.py: python notebooks/store_outputs.py {path.stem}"
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert [c.execution_count for c in code] == list(range(1, len(code) + 1)), f"{path.name}: not run in order"
    outputs = [o for c in code for o in c.outputs]
    assert not [o for o in outputs if o.output_type == "error"], f"{path.name}: stored with an error"
    figures = [o.data["image/png"] for o in outputs if "image/png" in o.get("data", {})]
    assert figures, f"{path.name}: no figure stored"
    assert all(base64.b64decode(f)[:8] == b"\x89PNG\r\n\x1a\n" for f in figures)
    assert path.stat().st_size < MAX_BYTES, f"{path.name}: {path.stat().st_size} bytes"


# 02 trains two DeltaNet models (55 s on the shared CPU): -m slow; its pieces (train / eval steps, parity,
# DeltaNet) are tested on their own by the default suite
SLOW_NOTEBOOKS = ("02_state_tracking",)


@pytest.mark.parametrize("path", [pytest.param(p, marks=pytest.mark.slow if p.stem in SLOW_NOTEBOOKS else ())
                                  for p in NOTEBOOKS], ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs_in_smoke_mode(path, tmp_path, monkeypatch):
    monkeypatch.setenv("SMOKE", "1")
    monkeypatch.setenv("MPLBACKEND", "Agg")
    nb = nbformat.read(path, as_version=4)
    client = nbclient.NotebookClient(nb, timeout=600, kernel_name="python3",
                                     resources={"metadata": {"path": str(tmp_path)}})
    client.execute()
