"""Checkpoints behind one small module (orbax-checkpoint's stable CheckpointManager).

Each checkpoint holds `state` (nnx.state((model, optimizer))) and `meta` (JSON: data position, step,
resolved config). Kept: the latest `keep_last` *and* the best `keep_best` by a validation metric (a
preservation policy of both, so the best never evicts the latest). Saves are asynchronous; `close()` waits.
"""

from __future__ import annotations

import os

import jax
import orbax.checkpoint as ocp

from ssm.checks import check_choice


class Checkpointer:
    def __init__(self, directory: str, *, keep_last: int = 2, keep_best: int = 1, best_metric: str = "loss",
                 best_mode: str = "min", async_save: bool = True):
        check_choice("ckpt.best_mode", best_mode, ("min", "max"))
        policies = [ocp.checkpoint_managers.LatestN(n=keep_last)]
        if keep_best > 0:
            # BestN keeps the *last* n after sorting ascending; reverse=True makes smaller values "better".
            policies.append(ocp.checkpoint_managers.BestN(
                get_metric_fn=lambda m: m[best_metric], reverse=best_mode == "min", n=keep_best,
                keep_checkpoints_without_metrics=False))
        options = ocp.CheckpointManagerOptions(
            preservation_policy=ocp.checkpoint_managers.AnyPreservationPolicy(policies),
            enable_async_checkpointing=async_save, create=True)
        self.best_metric, self.best_mode = best_metric, best_mode
        self.manager = ocp.CheckpointManager(os.path.abspath(directory), options=options,
                                             item_names=("state", "meta"))

    def latest_step(self) -> int | None:
        return self.manager.latest_step()

    def all_steps(self) -> list[int]:
        return list(self.manager.all_steps())

    def save(self, step: int, state, meta: dict, metrics: dict | None = None) -> bool:
        """Start an async save of (state, meta) at `step`; `metrics` ranks it for keep-best."""
        if step in self.manager.all_steps():
            return False
        if metrics is not None:
            metrics = {self.best_metric: float(metrics[self.best_metric])}
        return self.manager.save(step, args=ocp.args.Composite(state=ocp.args.StandardSave(state),
                                                               meta=ocp.args.JsonSave(meta)), metrics=metrics)

    def restore(self, step: int, like_state) -> tuple:
        """(state, meta) of checkpoint `step`, restored into the structure/dtypes/shardings of `like_state`."""
        abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, like_state)
        out = self.manager.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract),
                                                                 meta=ocp.args.JsonRestore()))
        return out["state"], out["meta"]

    def wait(self) -> None:
        self.manager.wait_until_finished()

    def close(self) -> None:
        self.manager.wait_until_finished()
        self.manager.close()
