"""Checkpoints behind one small module (orbax-checkpoint's stable CheckpointManager).

Each checkpoint holds `state` (nnx.state((model, optimizer))) and `meta` (JSON: data position, step,
resolved config). Kept: the latest `keep_last` *and* the best `keep_best` by a validation metric (a
preservation policy of both, so the best never evicts the latest). With S replicas in one state
(train.num_seeds) each replica's best `keep_best` are kept (one policy per replica: up to keep_last +
S·keep_best checkpoints). Saves are asynchronous; `close()` waits.
`read_only=True` (ssm.load_run): the directory must exist (nothing is created; load_run never saves).
"""

from __future__ import annotations

import os
import shutil
import signal
import sys

import jax
import orbax.checkpoint as ocp

from ssm.checks import check_choice, fail

# Test hook: the step whose save SIGKILLs the process right after the (asynchronous) write has started.
KILL_DURING_SAVE_ENV = "SSM_TEST_KILL_DURING_SAVE"


class Checkpointer:
    def __init__(self, directory: str, *, keep_last: int = 2, keep_best: int = 1, best_metric: str = "loss",
                 best_mode: str = "min", async_save: bool = True, read_only: bool = False,
                 num_replicas: int = 1):
        check_choice("ckpt.best_mode", best_mode, ("min", "max"))
        policies = [ocp.checkpoint_managers.LatestN(n=keep_last)]
        self.metric_names = [best_metric] if num_replicas == 1 else [f"{best_metric}/{k}" for k in range(num_replicas)]
        for name in self.metric_names if keep_best > 0 else ():
            # BestN keeps the *last* n after sorting ascending; reverse=True makes smaller values "better".
            policies.append(ocp.checkpoint_managers.BestN(
                get_metric_fn=lambda m, name=name: m[name], reverse=best_mode == "min", n=keep_best,
                keep_checkpoints_without_metrics=False))
        options = ocp.CheckpointManagerOptions(
            preservation_policy=ocp.checkpoint_managers.AnyPreservationPolicy(policies),
            enable_async_checkpointing=async_save, create=not read_only)
        self.best_metric, self.best_mode = best_metric, best_mode
        self.directory = os.path.abspath(directory)
        self.manager = ocp.CheckpointManager(os.path.abspath(directory), options=options,
                                             item_names=("state", "meta"))

    def latest_step(self) -> int | None:
        return self.manager.latest_step()

    def all_steps(self) -> list[int]:
        return list(self.manager.all_steps())

    def save(self, step: int, state, meta: dict, metrics: list[dict] | None = None) -> bool:
        """Start an async save of (state, meta) at `step`; `metrics` (one validation dict per replica)
        ranks it for keep-best."""
        if step in self.manager.all_steps():
            return False
        if metrics is not None:
            metrics = {name: float(m[self.best_metric]) for name, m in zip(self.metric_names, metrics)}
        started = self.manager.save(step, args=ocp.args.Composite(state=ocp.args.StandardSave(state),
                                                                  meta=ocp.args.JsonSave(meta)), metrics=metrics)
        if os.environ.get(KILL_DURING_SAVE_ENV) == str(step):
            os.kill(os.getpid(), signal.SIGKILL)
        return started

    def restore(self, step: int, like_state) -> tuple:
        """(state, meta) of checkpoint `step`, restored into the structure/dtypes/shardings of `like_state`."""
        abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, like_state)
        out = self.manager.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract),
                                                                 meta=ocp.args.JsonRestore()))
        return out["state"], out["meta"]

    def restore_latest(self, like_state) -> tuple:
        """(step, state, meta) of the newest checkpoint that restores, or (None, None, None) if there is
        none. Newer checkpoints that fail to restore (partly written, corrupted) are moved aside to
        <dir>/corrupt-<step>-<n> with a warning on stderr. If none restores, nothing is moved and a
        ConfigError is raised (typically a model that does not match the checkpointed one)."""
        steps = sorted(self.all_steps(), reverse=True)
        errors = []
        for step in steps:
            try:
                state, meta = self.restore(step, like_state)
            except Exception as e:  # noqa: BLE001 — any failure to read a checkpoint means "skip it"
                errors.append((step, f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"[:300]))
                continue
            for bad, why in errors:
                aside = self._move_aside(bad)
                print(f"warning: checkpoint {bad} could not be restored ({why}); moved to {aside}, "
                      f"resuming from checkpoint {step}", file=sys.stderr)
            if errors:
                self._reload()
            return step, state, meta
        if errors:
            fail(f"--workdir: no checkpoint in {self.directory} can be restored into this model (steps "
                 f"{', '.join(str(s) for s, _ in errors)}; newest error: {errors[0][1]}); use a new --workdir")
        return None, None, None

    def _move_aside(self, step: int) -> str:
        src, n = os.path.join(self.directory, str(step)), 0
        while os.path.exists(dst := os.path.join(self.directory, f"corrupt-{step}-{n}")):
            n += 1
        shutil.move(src, dst)
        return dst

    def _reload(self) -> None:
        self.manager.reload()

    def wait(self) -> None:
        self.manager.wait_until_finished()

    def close(self) -> None:
        self.manager.wait_until_finished()
        self.manager.close()
