"""Run notebooks from their jupytext sources and store them with their outputs (figures included), so that
they show their results when browsed: notebooks/NN_name.py -> notebooks/NN_name.ipynb.

    flock /tmp/ssm_cpu.lock python notebooks/store_outputs.py [NN_name ...]    # default: every notebook

Full sizes (not SMOKE): minutes of CPU each (02: ≈ 3 min per setting). tests/test_notebooks.py checks that
each stored notebook matches its source and holds its outputs, and re-executes each in SMOKE mode.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def sources() -> list[Path]:
    """The jupytext sources: NN_name.py (this script is not one)."""
    return sorted(p for p in HERE.glob("[0-9][0-9]_*.py"))


def execute(source: Path, *, smoke: bool, timeout: int = 3600):
    """The notebook of `source`, executed top to bottom in notebooks/ (SMOKE=1 if `smoke`)."""
    import jupytext
    import nbclient

    nb = jupytext.read(source)
    env = {"SMOKE": "1" if smoke else "0"}
    saved = {k: os.environ.get(k) for k in (*env, "MPLBACKEND")}
    os.environ.update(env)
    os.environ.pop("MPLBACKEND", None)  # the kernel's inline backend: figures become PNG outputs
    try:
        nbclient.NotebookClient(nb, timeout=timeout, kernel_name="python3", record_timing=False,
                                resources={"metadata": {"path": str(source.parent)}}).execute()
    finally:
        for k, v in saved.items():
            os.environ.pop(k, None) if v is None else os.environ.__setitem__(k, v)
    return nb


def main(names: list[str]) -> None:
    import nbformat

    chosen = [p for p in sources() if not names or p.stem in names]
    for source in chosen:
        nb = execute(source, smoke=False)
        nbformat.write(nb, source.with_suffix(".ipynb"))
        print(f"{source.with_suffix('.ipynb').name}: {source.with_suffix('.ipynb').stat().st_size / 1e3:.0f} kB")


if __name__ == "__main__":
    main(sys.argv[1:])
