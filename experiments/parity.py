"""Negative eigenvalues on parity (Grazzi et al., 2025): DeltaNet β ∈ (0, 2) vs β ∈ (0, 1), the gated
diagonal RNN with decays in (−1, 1) vs (0, 1), DeltaProduct n_h = 2, and the diagonal complex S4D / S5 layers
as baselines. Train lengths 3–40, test 40–256, scaled accuracy; a seed "solved" parity at test scaled
accuracy >= 0.9 (train.solved_threshold). All seeds of a setting train as one run (train.num_seeds).

    python experiments/parity.py run  [--preset default] [--seeds 0 1 2] [--only dn-neg dn-pos ...] [--lock F]
    python experiments/parity.py report            # table (markdown) + docs/figures/parity_by_length.png
"""

from grid import Experiment, main

PARITY = Experiment(
    name="parity", config="configs/parity.py", title="Parity: accuracy vs length (trained on 3–40)",
    xlabel="test sequence length (trained on 3–40)",
    settings={
        "dn-neg": ("DeltaNet, β ∈ (0, 2): eigenvalues (−1, 1)",
                   ["--config.model.mixer=deltanet", "--config.model.deltanet.allow_neg_eigval=True"]),
        "dn-pos": ("DeltaNet, β ∈ (0, 1): eigenvalues (0, 1)",
                   ["--config.model.mixer=deltanet", "--config.model.deltanet.allow_neg_eigval=False"]),
        "dp2-neg": ("DeltaProduct n_h = 2, (−1, 1)",
                    ["--config.model.mixer=deltaproduct", "--config.model.deltaproduct.num_householder=2",
                     "--config.model.deltaproduct.allow_neg_eigval=True"]),
        "diag-neg": ("gated diagonal RNN (`diag`), decays in (−1, 1)",
                     ["--config.model.mixer=diag", "--config.model.diag.allow_neg_eigval=True"]),
        "diag-pos": ("gated diagonal RNN (`diag`), decays in (0, 1)",
                     ["--config.model.mixer=diag", "--config.model.diag.allow_neg_eigval=False"]),
        "s4d": ("S4D-LegS (diagonal, complex)", ["--config.model.mixer=s4d"]),
        "s5": ("S5-PTD (diagonal, complex)", ["--config.model.mixer=s5"]),
    })

if __name__ == "__main__":
    main(PARITY, __doc__)
