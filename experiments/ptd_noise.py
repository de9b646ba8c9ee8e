"""PTD robustness on a trained model (Yu et al., ICLR 2024, issue 6 item 4): train S5-PTD (`init="s5-ptd"`) and
S5 with the normal-part init (`init="s5"`) — or, with `--mixer s4d`, S4-PTD (`init="ptd"`) and S4D-LegS
(`init="legs"`) — with the same seed and hyperparameters, then evaluate each on the test set with Fourier-mode
noise added to the input of the first SSM layer, at its largest eigenfrequency.

    python experiments/ptd_noise.py run [--mixer s5|s4d] [--preset ptd_noise] [--seed0 0] [--num-seeds 3]  # per init
    python experiments/ptd_noise.py report [--eps 0 0.25 0.5 1 2 4]         # noise eval, table, figure

`run` trains, per init, ONE `train.py --config=configs/char_lm.py:<preset> --config.model.mixer=<mixer>
--config.model.<mixer>.init=<init> --config.seed=<seed0> --config.train.num_seeds=<S>` (`train_args`: S replicas,
seeds seed0 .. seed0 + S - 1, in one vmapped step) into runs/ptd_noise/<init>.seeds<first>-<last>/, the inits one
after the other, each waiting for the shared CPU lock /tmp/ssm_cpu.lock, and appends each wall time (all S seeds
together) to runs/ptd_noise/walltimes.jsonl. `report` restores every replica's final checkpoint
(`ssm.load_run(..., replica=k)`) and evaluates it on the test split for every ε.

The noise. For the trained first S5 layer take the stored state p with the largest |Im Λ_p| (continuous
time; ≈ N²/π at init for HiPPO-LegS's normal part) and its angle per step θ = Im(Λ_p)·Δ_p, i.e. the
frequency in the layer's own time scale (the angle of Λ̄_p = exp(Λ_p Δ_p)). The layer's input u (B, T, H)
(the embedded tokens after the block's RMSNorm, exactly what the SSM sees) becomes
    u_t + ε·cos(θ t)·1_H          (t = 0, 1, ..., the same in every channel),
so ε is in units of the per-channel RMS of u (≈ 1 after the norm; the clean RMS is printed).
S4D has one Δ_h per channel and its channels do not mix, so there each channel h gets its own frequency:
the mode with the largest |Im A_{h,n}| and θ_h = Im(A_{h,n})·Δ_h, i.e. u_{t,h} + ε·cos(θ_h t).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))  # experiments/grid.py, also when loaded by path
from grid import ROOT, save_figure, train_logged  # noqa: E402

RUNS = ROOT / "runs" / "ptd_noise"
MIXER_INITS = {"s5": {"s5-ptd": "S5-PTD", "s5": "S5 (normal-part init)"},
               "s4d": {"ptd": "S4-PTD", "legs": "S4D-LegS (normal-part init)"}}
INITS = {k: v for inits in MIXER_INITS.values() for k, v in inits.items()}  # run-name prefix -> label
EPS = (0.0, 0.25, 0.5, 1.0, 2.0, 4.0)
CONTROL_THETAS = (0.05, 0.5, 1.5, 3.0)  # control: the same noise at fixed frequencies (rad/step), ε = 1


# ---------------------------------------------------------------------------------------- noise helpers
def largest_eigenfrequency(layer):
    """For an `ssm.S5`: (p, Im Λ_p, θ_p = Im Λ_p · Δ_p) of the stored state p with the largest |Im Λ|.
    For an `ssm.S4D`: the same per channel h, as arrays (H,): the mode n_h with the largest |Im A_{h,n}|,
    Im A_{h,n_h} and θ_h = Im A_{h,n_h} · Δ_h.

    θ is the angle per step of the ZOH eigenvalue exp(Λ Δ), not reduced mod 2π."""
    Lambda, _, _, dt = layer.ssm()
    im, dt = np.asarray(Lambda.imag, np.float64), np.asarray(dt, np.float64)
    if im.ndim == 2:  # S4D: (H, N/2) modes, one Δ per channel
        n = np.argmax(np.abs(im), axis=1)
        im_h = im[np.arange(im.shape[0]), n]
        return n, im_h, im_h * dt
    p = int(np.argmax(np.abs(im)))
    return p, float(im[p]), float(im[p] * dt[p])


def fourier_noise(theta, T: int, eps: float, direction) -> np.ndarray:
    """(T, H) float32: eps · cos(θ_h t) · direction_h for t = 0..T−1, θ a scalar or one per channel (H,)
    (reduced mod 2π first, in float64)."""
    t = np.arange(T, dtype=np.float64)[:, None]
    theta = np.mod(np.asarray(theta, np.float64), 2 * np.pi)
    return (eps * np.cos(theta * t) * np.asarray(direction, np.float64)[None]).astype(np.float32)


def _noisy_mixer_class():
    from flax import nnx

    class NoisyInput(nnx.Module):
        """Wraps a mixer: adds a fixed (T, H) sequence to its input x (B, T, H) (the first T' <= T rows)."""

        def __init__(self, mixer, noise):
            self.mixer, self.causal = mixer, mixer.causal
            self.noise = nnx.Variable(noise)

        def __call__(self, x, **kwargs):
            return self.mixer(x + self.noise[...][: x.shape[1]].astype(x.dtype), **kwargs)

    return NoisyInput


# ------------------------------------------------------------------------------------------------- train
LOCK = "/tmp/ssm_cpu.lock"  # the shared machine's CPU lock (one experiment at a time)


def train_args(preset: str, seed: int, mixer: str, init: str, num_seeds: int = 1) -> list[str]:
    """train.py flags of one run of `num_seeds` replicas, seeds seed .. seed + num_seeds - 1 (the config fields
    that pick the mixer and its init live here only)."""
    return [f"--config=configs/char_lm.py:{preset}", f"--config.seed={seed}", f"--config.train.num_seeds={num_seeds}",
            f"--config.model.mixer={mixer}", f"--config.model.{mixer}.init={init}", "--config.train.progress_bar=False"]


def run_name(init: str, seed0: int, num_seeds: int) -> str:
    return f"{init}.seeds{seed0}-{seed0 + num_seeds - 1}"


def run(preset: str, seed0: int, num_seeds: int, mixer: str = "s5") -> None:
    RUNS.mkdir(parents=True, exist_ok=True)
    for init in MIXER_INITS[mixer]:
        train_logged(train_args(preset, seed0, mixer, init, num_seeds), RUNS / run_name(init, seed0, num_seeds),
                     RUNS / "walltimes.jsonl", preset, seed0, lock=LOCK)


# -------------------------------------------------------------------------------------------------- eval
def restore(workdir: Path, replica: int | None = None):
    """(model, config, test arrays) of the run's (replica's) final checkpoint; the test split of the run's
    data.seed, as in training."""
    import ssm
    from ssm.train.loop import load_data

    model, config = ssm.load_run(workdir, step="last", replica=replica)  # also migrates old runs' configs
    return model, config, load_data(config["data"])["test"]


def noise_eval(workdir: Path, eps_list, control_thetas=CONTROL_THETAS, replica: int | None = None) -> dict:
    """Test accuracy for each ε, with the eigenfrequency used and the clean input RMS of the first SSM layer;
    and the accuracy at ε = 1 for each fixed frequency of `control_thetas` (is the eigenfrequency special?).
    For S4D the noise uses each channel's own θ_h; the table shows the channel with the largest |Im A|."""
    import jax
    import jax.numpy as jnp
    from flax import nnx

    from ssm.train.data import eval_batches
    from ssm.train.objective import per_target

    model, config, test = restore(workdir, replica)
    first = model.blocks[0]
    p, im, theta = largest_eigenfrequency(first.mixer)
    noise_theta, per_channel = theta, None
    if np.ndim(theta):  # S4D: one frequency per channel
        per_channel = [float(v) for v in theta]
        top = int(np.argmax(np.abs(im)))
        p, im, theta = int(p[top]), float(im[top]), float(theta[top])
    H, T = config["model"]["d_model"], test["inputs"].shape[1]
    u = first.mixer_norm(model.embed(jnp.asarray(test["inputs"])))
    rms = float(jnp.sqrt(jnp.mean(u.astype(jnp.float32) ** 2)))
    first.mixer = _noisy_mixer_class()(first.mixer, jnp.zeros((T, H), jnp.float32))

    @nnx.jit
    def correct(model, batch):
        nll, ok = per_target(model, batch)
        return (ok * batch["weights"]).sum(), batch["weights"].sum(), (nll * batch["weights"]).sum()

    out = {"state": p, "im_lambda": im, "theta": theta, "theta_mod_2pi": float(np.mod(theta, 2 * np.pi)),
           "theta_per_channel": per_channel, "input_rms": rms, "eps": [], "accuracy": [], "loss": []}
    def evaluate(th, eps):
        first.mixer.noise[...] = jnp.asarray(fourier_noise(th, T, eps, np.ones(H)))
        sums = np.array([jax.device_get(correct(model, b)) for b in eval_batches(test, 256)]).sum(0)
        return float(sums[0] / sums[1]), float(sums[2] / sums[1])

    for eps in eps_list:
        acc, loss = evaluate(noise_theta, eps)
        out["eps"].append(eps)
        out["accuracy"].append(acc)
        out["loss"].append(loss)
    out["control"] = {f"{th:g}": evaluate(th, 1.0)[0] for th in control_thetas}
    return out


PAIRS = (("ptd", "legs"), ("s5-ptd", "s5"))  # (PTD init, its normal-part counterpart), trained with the same seeds


def report(eps_list, out_png: Path) -> None:
    """Noise-evaluate every replica of every finished run (results kept in runs/ptd_noise/noise_results.json),
    print the tables and draw the figure. The wall time shown is that of the whole run (all its seeds)."""
    dirs = sorted(p for p in RUNS.glob("*.seeds*") if (p / "summary.json").exists())
    walls = {}
    if (RUNS / "walltimes.jsonl").exists():
        walls = {r["run"]: r for r in map(json.loads, open(RUNS / "walltimes.jsonl"))}
    results = {}
    for d in dirs:
        init = d.name.split(".seeds")[0]
        seeds = [s["seed"] for s in json.load(open(d / "summary.json")).get("seeds", [])] or [None]
        for k, seed in enumerate(seeds):
            replica = None if seed is None else k
            seed = json.load(open(d / "config.json"))["seed"] if seed is None else seed
            results[f"{init}-s{seed}"] = {"init": init, "seed": int(seed), "run": d.name,
                                          **noise_eval(d, eps_list, replica=replica),
                                          "wall_s": walls.get(d.name, {}).get("wall_s")}
    json.dump(results, open(RUNS / "noise_results.json", "w"), indent=1)
    print_tables(results, eps_list)
    draw(results, out_png)


def print_tables(results: dict, eps_list) -> None:
    """Per run; the control; mean ± std per init; and per (PTD, normal part) pair the paired differences over
    the seeds both have: accuracy drop from ε = 0 (normal − PTD: > 0 means PTD loses less) at each ε."""
    print("| init | seed | Im Λ_p (cont.) | θ = Im Λ_p Δ_p (mod 2π) | input RMS | " +
          " | ".join(f"ε = {e:g}" for e in eps_list) + " | drop at ε = " + f"{eps_list[-1]:g} | run wall (s, all seeds) |")
    print("|---" * (6 + len(eps_list)) + "|---|")
    for r in results.values():
        print(f"| {INITS[r['init']]} | {r['seed']} | {r['im_lambda']:.1f} | {r['theta']:.2f} ({r['theta_mod_2pi']:.2f}) | "
              f"{r['input_rms']:.2f} | " + " | ".join(f"{a:.3f}" for a in r["accuracy"]) +
              f" | {r['accuracy'][0] - r['accuracy'][-1]:.3f} | {r['wall_s']} |")
    print()
    print("Control, ε = 1: accuracy with the noise at the eigenfrequency θ vs at fixed frequencies (rad/step)")
    print("| init | seed | at θ | " + " | ".join(f"at {t:g}" for t in CONTROL_THETAS) + " |")
    print("|---" * (3 + len(CONTROL_THETAS)) + "|")
    for r in results.values():
        at_theta = r["accuracy"][r["eps"].index(1.0)] if 1.0 in r["eps"] else float("nan")
        print(f"| {INITS[r['init']]} | {r['seed']} | {at_theta:.3f} | " +
              " | ".join(f"{r['control'][f'{t:g}']:.3f}" for t in CONTROL_THETAS) + " |")
    print()
    print("| init | seeds | " + " | ".join(f"ε = {e:g}" for e in eps_list) + " |")
    print("|---" * (2 + len(eps_list)) + "|")
    for init, label in INITS.items():
        acc = np.array([r["accuracy"] for r in results.values() if r["init"] == init])
        if len(acc):
            print(f"| {label} | {len(acc)} | " + " | ".join(f"{m:.3f} ± {s:.3f}" for m, s in
                                                           zip(acc.mean(0), acc.std(0))) + " |")
    print()
    print("Paired over seeds: drop(normal part) − drop(PTD), drop = acc(0) − acc(ε); > 0: PTD more robust")
    print("| pair | seeds | " + " | ".join(f"ε = {e:g}" for e in eps_list[1:]) + " | PTD loses less (seeds) |")
    print("|---" * (3 + len(eps_list) - 1) + "|")
    for ptd, normal in PAIRS:
        by_seed = {init: {r["seed"]: np.array(r["accuracy"]) for r in results.values() if r["init"] == init}
                   for init in (ptd, normal)}
        seeds = sorted(set(by_seed[ptd]) & set(by_seed[normal]))
        if not seeds:
            continue
        drop = {i: np.array([by_seed[i][s][0] - by_seed[i][s][1:] for s in seeds]) for i in (ptd, normal)}
        diff = drop[normal] - drop[ptd]  # (seeds, ε > 0)
        print(f"| {INITS[ptd]} vs {INITS[normal]} | {', '.join(map(str, seeds))} | " +
              " | ".join(f"{m:+.3f} ± {s:.3f}" for m, s in zip(diff.mean(0), diff.std(0))) +
              f" | {int((diff[:, -1] > 0).sum())} of {len(seeds)} at ε = {eps_list[-1]:g} |")


def draw(results: dict, out_png: Path) -> None:
    """One panel per (PTD, normal part) pair: test accuracy vs ε, thin lines per seed, thick the mean."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pairs = [p for p in PAIRS if any(r["init"] in p for r in results.values())]
    fig, axes = plt.subplots(1, len(pairs), figsize=(5.0 * len(pairs), 3.5), squeeze=False, sharey=True)
    for ax, pair in zip(axes[0], pairs):
        for color, init in zip(("C0", "C1"), pair):
            runs = [r for r in results.values() if r["init"] == init]
            if not runs:
                continue
            for r in runs:
                ax.plot(r["eps"], r["accuracy"], color=color, alpha=0.35, lw=0.8)
            ax.plot(runs[0]["eps"], np.mean([r["accuracy"] for r in runs], 0), color=color, marker="o", lw=2,
                    label=f"{INITS[init]} ({len(runs)} seeds)")
        ax.set_xlabel("ε (noise amplitude per channel; input RMS ≈ 1)")
        ax.legend(fontsize=8)
    axes[0, 0].set_ylabel("test next-char accuracy")
    fig.suptitle("Fourier noise at the largest eigenfrequency of the first layer (mean and one line per seed)",
                 fontsize=10)
    save_figure(fig, out_png)


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("command", choices=["run", "report"])
    p.add_argument("--mixer", choices=list(MIXER_INITS), default="s5", help="run: S5 / S5-PTD or S4D-LegS / S4-PTD")
    p.add_argument("--preset", default="ptd_noise")
    p.add_argument("--seed0", type=int, default=0, help="run: the first seed (config.seed)")
    p.add_argument("--num-seeds", type=int, default=3, help="run: train.num_seeds, the replicas of each run")
    p.add_argument("--eps", type=float, nargs="+", default=list(EPS))
    p.add_argument("--out", default=str(ROOT / "docs" / "figures" / "ptd_noise.png"))
    a = p.parse_args()
    sys.path.insert(0, str(ROOT))
    run(a.preset, a.seed0, a.num_seeds, a.mixer) if a.command == "run" else report(a.eps, Path(a.out))
