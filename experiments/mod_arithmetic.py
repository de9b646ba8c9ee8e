"""Modular arithmetic mod 5 without brackets (Grazzi et al., 2025, Table 2): DeltaNet with eigenvalues in
(−1, 1) vs (0, 1), and DeltaProduct n_h = 2. Train lengths 3–40, test 40–256, scaled accuracy. All seeds of
a setting train as one run (train.num_seeds).

    python experiments/mod_arithmetic.py run  [--preset default] [--seeds 0 1 2] [--only dn-neg ...] [--lock F]
    python experiments/mod_arithmetic.py report   # table + docs/figures/mod_arithmetic_by_length.png
"""

from grid import Experiment, main

MOD_ARITHMETIC = Experiment(
    name="mod_arithmetic", config="configs/mod_arithmetic.py",
    title="Modular arithmetic (mod 5, no brackets): accuracy vs length",
    xlabel="test sequence length (trained on 3–40)",
    settings={
        "dn-neg": ("DeltaNet, eigenvalues (−1, 1)",
                   ["--config.model.mixer=deltanet", "--config.model.deltanet.allow_neg_eigval=True"]),
        "dn-pos": ("DeltaNet, eigenvalues (0, 1)",
                   ["--config.model.mixer=deltanet", "--config.model.deltanet.allow_neg_eigval=False"]),
        "dp2-neg": ("DeltaProduct n_h = 2, (−1, 1)",
                    ["--config.model.mixer=deltaproduct", "--config.model.deltaproduct.num_householder=2",
                     "--config.model.deltaproduct.allow_neg_eigval=True"]),
    })

if __name__ == "__main__":
    main(MOD_ARITHMETIC, __doc__)
