"""Group word problems with one layer (Siems et al., 2025): S3 with DeltaProduct n_h ∈ {1, 2}, eigenvalues in
(−1, 1) or (0, 1) (the paper: only n_h = 2 with (−1, 1) learns S3); S5 with n_h ∈ {1, 2, 4} (the paper:
n_h = 4 stays accurate past the training length); the cyclic groups Z5 and Z2 with the diagonal layers
(`diag` with decays in (−1, 1) or (0, 1), S5) and DeltaProduct n_h = 2. All seeds of a setting train as one
run (train.num_seeds); accuracy per prefix length and the cumulative-prefix sequence accuracy curve.

    python experiments/word_problem.py run --preset cpu --seeds 0 1 2 3 4 5 6 7 --only s3-2-neg s3-2-pos ...
    python experiments/word_problem.py report --preset cpu --only s3-1-neg s3-1-pos s3-2-neg s3-2-pos
"""

from grid import Experiment, main


def _setting(group: str, n_h: int, neg: bool):
    label = f"{group}, DeltaProduct n_h = {n_h}, eigenvalues {'(−1, 1)' if neg else '(0, 1)'}"
    return label, [f"--config.data.group={group}", "--config.model.mixer=deltaproduct",
                   f"--config.model.deltaproduct.num_householder={n_h}",
                   f"--config.model.deltaproduct.allow_neg_eigval={neg}"]


def _diagonal(group: str, mixer: str, neg: bool | None = None):
    if mixer == "s5":
        return f"{group}, S5-PTD (diagonal complex, time-invariant)", [f"--config.data.group={group}",
                                                                       "--config.model.mixer=s5"]
    label = f"{group}, `diag` (gated real diagonal), decays {'(−1, 1)' if neg else '(0, 1)'}"
    return label, [f"--config.data.group={group}", "--config.model.mixer=diag",
                   f"--config.model.diag.allow_neg_eigval={neg}"]


WORD_PROBLEM = Experiment(
    name="word_problem", config="configs/word_problem.py", bucket="position",
    title="Word problems, one layer: accuracy vs prefix length",
    xlabel="prefix length (test words; the preset's training length: default 64, cpu 8)",
    settings={
        **{f"s3-{n}-{s}": _setting("S3", n, s == "neg") for n in (1, 2) for s in ("neg", "pos")},
        **{f"s5-{n}-neg": _setting("S5", n, True) for n in (1, 2, 4)},
        "z5-diag-neg": _diagonal("Z5", "diag", True),
        "z5-s5": _diagonal("Z5", "s5"),
        "z5-2-neg": _setting("Z5", 2, True),
        "z2-diag-neg": _diagonal("Z2", "diag", True),
        "z2-diag-pos": _diagonal("Z2", "diag", False),
    })

if __name__ == "__main__":
    main(WORD_PROBLEM, __doc__)
