"""Regenerate the shipped PTD cache for HiPPO-LegS: `python -m ssm.init.ptd_table 8 16 32 64`.

Each N is optimized with `ssm.init.ptd.DEFAULTS` and its perturbation E is (re)written into `ssm/init/ptd_legs.npz`
(N=64 takes a few minutes on a laptop CPU). `perturb_then_diagonalize` reads the table whenever it is
called on `hippo_legs(N)[0]` with the default options.
"""

from __future__ import annotations

import os
import sys
import time

import numpy as np

from ssm.init.hippo import hippo_legs
from ssm.init.ptd import DEFAULTS, TABLE_PATH, optimize_perturbation


def write_table(sizes):
    """Optimize E for each N in `sizes` and write it into the table (other entries are kept)."""
    table = dict(np.load(TABLE_PATH)) if os.path.exists(TABLE_PATH) else {}
    for N in sizes:
        t0 = time.perf_counter()
        A = hippo_legs(N)[0]
        E = optimize_perturbation(A, **DEFAULTS)
        lam, V = np.linalg.eig(A + E)
        V = V / np.linalg.norm(V, axis=0)
        table[f"E_{N}"] = E
        print(f"N={N}: ‖E‖/‖A‖={np.linalg.norm(E, 2) / np.linalg.norm(A, 2):.3f} κ(V)={np.linalg.cond(V):.2f} "
              f"max Re λ={lam.real.max():.3f} ({time.perf_counter() - t0:.0f} s)", flush=True)
        np.savez_compressed(TABLE_PATH, **table)


if __name__ == "__main__":
    write_table([int(n) for n in sys.argv[1:]] or [8, 16, 32, 64])
