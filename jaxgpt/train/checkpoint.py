"""Orbax checkpoints of a run: train state, data-iterator state, clock and config.

Each checkpoint is one step directory with three items:
  state  the TrainState pytree (params, optimizer state, step), restored onto given shardings
  data   the Grain iterator state (JSON), so a resumed run sees exactly the same batches
  meta   JSON: elapsed training time, eval time, the RNG seed, best val loss, the config
Preservation keeps the latest `keep_checkpoints` plus the best `keep_best` by val loss
(LatestN OR BestN; `max_to_keep` with `best_fn` alone would keep only the N best).
Saves are asynchronous; Orbax writes each step to a temporary directory and renames it when
complete, so a crash mid-save never leaves the latest checkpoint unreadable.
"""

from __future__ import annotations

import math
import os
from typing import Any

import jax
import orbax.checkpoint as ocp
from orbax.checkpoint.checkpoint_managers import preservation_policy as pp

ITEMS = ("state", "data", "meta")


def manager(directory: str, *, keep_latest: int, keep_best: int,
            async_save: bool = True) -> ocp.CheckpointManager:
  policies = [pp.LatestN(n=keep_latest)]
  if keep_best > 0:
    policies.append(pp.BestN(get_metric_fn=lambda m: -m["val_loss"], n=keep_best,
                             keep_checkpoints_without_metrics=False))
  options = ocp.CheckpointManagerOptions(
      preservation_policy=pp.AnyPreservationPolicy(policies),
      enable_async_checkpointing=async_save,
      cleanup_tmp_directories=True,
      create=True,
  )
  return ocp.CheckpointManager(os.path.abspath(directory), options=options, item_names=ITEMS)


def save(mngr: ocp.CheckpointManager, step: int, state: Any, data_state: dict, meta: dict,
         val_loss: float | None) -> None:
  """Starts an (async) save; val_loss ranks it for the best-N policy (inf when unknown)."""
  loss = float(val_loss) if val_loss is not None and math.isfinite(val_loss) else float("inf")
  # The train step donates its state buffers, and on CPU Orbax's host copy may alias them: save
  # a private copy, or the background write can capture parameters of a later step.
  state = jax.tree.map(lambda x: x.copy() if isinstance(x, jax.Array) else x, state)
  mngr.save(step, args=ocp.args.Composite(
      state=ocp.args.StandardSave(state),
      data=ocp.args.JsonSave(data_state),
      meta=ocp.args.JsonSave(meta),
  ), metrics={"val_loss": loss}, force=True)


def restore(mngr: ocp.CheckpointManager, abstract_state: Any, step: int | None = None
            ) -> tuple[Any, dict, dict]:
  """Restores (state, data_state, meta) at `step` (default latest) onto abstract shardings."""
  step = mngr.latest_step() if step is None else step
  out = mngr.restore(step, args=ocp.args.Composite(
      state=ocp.args.StandardRestore(abstract_state),
      data=ocp.args.JsonRestore(),
      meta=ocp.args.JsonRestore(),
  ))
  return out["state"], out["data"], out["meta"]
