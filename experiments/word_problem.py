"""Group word problems with one DeltaProduct layer (Siems et al., 2025): S3 with n_h ∈ {1, 2}, eigenvalues
in (−1, 1) or (0, 1) (the paper: only n_h = 2 with (−1, 1) learns S3); S5 with n_h ∈ {1, 2, 4} (the paper:
n_h = 4 stays accurate past the training length). Default preset: train length 64, test 256 (the paper:
128 and 512); accuracy per prefix length.

    python experiments/word_problem.py run --only s3-1-neg s3-1-pos s3-2-neg s3-2-pos [--seeds 0 1]
    python experiments/word_problem.py report     # table + docs/figures/word_problem_by_position.png
"""

from grid import Experiment, main


def _setting(group: str, n_h: int, neg: bool):
    label = f"{group}, n_h = {n_h}, eigenvalues {'(−1, 1)' if neg else '(0, 1)'}"
    return label, [f"--config.data.group={group}", f"--config.model.deltaproduct.num_householder={n_h}",
                   f"--config.model.deltaproduct.allow_neg_eigval={neg}"]


WORD_PROBLEM = Experiment(
    name="word_problem", config="configs/word_problem.py", bucket="position",
    title="Word problems, one DeltaProduct layer: accuracy vs prefix length",
    xlabel="prefix length (trained on length 64)",
    settings={
        **{f"s3-{n}-{s}": _setting("S3", n, s == "neg") for n in (1, 2) for s in ("neg", "pos")},
        **{f"s5-{n}-neg": _setting("S5", n, True) for n in (1, 2, 4)},
    })

if __name__ == "__main__":
    main(WORD_PROBLEM, __doc__)
