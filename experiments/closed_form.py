"""The closed-form positive controls (ssm/analysis/closed_form.py) at 10× and 100× their training lengths: accuracy
and the worst feature error relative to the prototype spacing (< 0.5 is still right; the tests ask ≤ 0.1 at 10×).
No training; ≈ 3–5 minutes on CPU (mostly compilation).

    python experiments/closed_form.py          # markdown table for docs/closed_form.md
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
from flax import nnx

from ssm.analysis import closed_form as cf
from ssm.tasks import make_parity, make_word_problem


@nnx.jit
def _run(model, inputs, mask):
    vocab = model.embed.embedding.shape[0]
    return model.blocks[0](model.embed(inputs), mask=mask)[..., vocab:], model(inputs, mask=mask).argmax(-1)


def score(model, data) -> tuple[float, float]:
    """(accuracy on the weighted targets, max ‖f_t − f_target‖ / closest prototype spacing)."""
    T = data["inputs"].shape[1]
    mask = jnp.arange(T)[None] < jnp.asarray(data["lengths"])[:, None]
    feats, pred = (np.asarray(a) for a in _run(model, jnp.asarray(data["inputs"]), mask))
    w = data["weights"] > 0
    vocab = model.embed.embedding.shape[0]
    proto = np.asarray(model.head.kernel[...])[vocab:].T
    spacing = min(np.linalg.norm(a - b) for i, a in enumerate(proto) for b in proto[i + 1:])
    err = np.linalg.norm(feats - proto[data["targets"]], axis=-1)[w].max()
    return float((pred[w] == data["targets"][w]).mean()), float(err / spacing)


def one_letter(m: int, T: int, n: int = 4) -> dict:
    return {"inputs": np.full((n, T), 2, np.int32), "lengths": np.full(n, T, np.int32),
            "targets": np.tile(np.arange(1, T + 1) % m, (n, 1)).astype(np.int32),
            "weights": np.ones((n, T), np.float32)}


def main() -> None:
    rng = np.random.default_rng(0)
    parity = lambda T: make_parity(rng, 64, min_len=T // 10, max_len=T)  # noqa: E731
    words = lambda g: lambda T: make_word_problem(rng, 8, group=g, length=T)  # noqa: E731
    rows = [  # (name, mixer, builder, data(T), training length)
        ("parity", "diag, ±1 decays", cf.diag_parity, parity, 40),
        ("parity", "DeltaNet, β = 2", lambda: cf.deltaproduct_group("Z2"), parity, 40),
        ("Z2 words", "diag, ±1 decays", cf.diag_parity, words("Z2"), 128),
        ("Z3 one-letter words (t mod 3)", "S5, Λ̄ = e^{2πi/3}", lambda: cf.s5_cyclic_counter(3),
         lambda T: one_letter(3, T), 128),
        ("Z5 one-letter words (t mod 5)", "S5, Λ̄ = e^{2πi/5}", lambda: cf.s5_cyclic_counter(5),
         lambda T: one_letter(5, T), 128),
    ]
    for group in ("Z3", "Z5", "D4", "S3", "S4", "S5"):
        rows.append((f"{group} words", "DeltaProduct", lambda g=group: cf.deltaproduct_group(g), words(group), 128))
    rows.append(("S3 words", "DeltaProduct, permutation rep.",
                 lambda: cf.deltaproduct_group("S3", representation_kind="permutation"), words("S3"), 128))
    print("| task | layer | n_h | 10× length | accuracy | max error / spacing | 100× length | accuracy | "
          "max error / spacing |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name, mixer, build, data, L in rows:
        model = build()
        n_h = getattr(model.blocks[0].mixer, "num_householder", "")
        cells = []
        for T in (10 * L, 100 * L):
            acc, ratio = score(model, data(T))
            cells.append(f"{T} | {acc:.4f} | {ratio:.4f}")
        print(f"| {name} | {mixer} | {n_h} | " + " | ".join(cells) + " |", flush=True)
    print("\nThe S5 counter on random Zm words of length 200 (it counts positions; chance is 1/m):")
    for m in (2, 3, 5):
        w = make_word_problem(rng, 16, group=f"Z{m}", length=200)
        print(f"  Z{m}: accuracy {score(cf.s5_cyclic_counter(m), w)[0]:.2f}")


if __name__ == "__main__":
    main()
