"""The optional Weights & Biases sink (`log.wandb = True`; the `wandb` extra).

A run's `MetricsWriter` (metrics.jsonl) hands every row to its sinks; this one logs the row's
numbers to a W&B run at the row's step, so the W&B charts hold the same metrics as
metrics.jsonl. The run's config goes in flattened (`model.d_model`, ...), and at the end the
summary (summary.json without the curve) and curves.png where the run drew one. A single run is
one W&B run named after its workdir; each trial of a sweep is one W&B run, named
`<study>-t<trial number>` and grouped by the study name (`jaxgpt.sweep.runner` fills
`log.wandb_name` and `log.wandb_group`); a cohort trained directly names its trials
`<cohort dir>-trial_<i>`, grouped by the cohort dir. Set `log.wandb_name` / `log.wandb_group`
to choose.

`wandb` is imported only when a sink is opened, so runs without `log.wandb` never load it
(`config.validate` refuses `log.wandb=True` without the package, naming the extra to install).
The W&B run's id is kept in `<dir>/wandb_run_id`, so a resumed run continues the same W&B run
(W&B drops rows at steps it already has). W&B's own variables apply: `WANDB_MODE=offline`
writes the run under `WANDB_DIR` (default: the run's directory) for a later `wandb sync`;
`WANDB_API_KEY` / `wandb login` for online runs.
"""

from __future__ import annotations

import math
import os
from typing import Any, Mapping

from jaxgpt import checks
from jaxgpt import config as config_lib
from jaxgpt.errors import ConfigError

RUN_ID_FILE = "wandb_run_id"


def _loggable(values: Mapping[str, Any]) -> dict[str, float]:
  """A metrics row's numbers (None, text and the step itself left out)."""
  return {k: v for k, v in values.items()
          if k != "step" and checks.is_number(v) and not isinstance(v, bool)}


def _summary_values(summary: Mapping[str, Any]) -> dict[str, Any]:
  """summary.json's values for the W&B summary: no curve, no nulls, no non-finite floats."""
  out = {}
  for k, v in summary.items():
    if k == "curve" or v is None or (isinstance(v, float) and not math.isfinite(v)):
      continue
    out[k] = v
  return out


class WandbSink:
  """One W&B run fed by a `MetricsWriter`: `log` each row, `summarize` at the end, `close`."""

  def __init__(self, run, wandb_module):
    self.run, self._wandb = run, wandb_module
    self.last_step: int | None = None

  def log(self, step: int, values: Mapping[str, Any]) -> None:
    row = _loggable(values)
    if row:
      self.run.log(row, step=int(step))
      self.last_step = int(step)

  def summarize(self, summary: Mapping[str, Any], images: Mapping[str, str]) -> None:
    """The summary's values into the W&B summary; each existing image file logged (curves)."""
    self.run.summary.update(_summary_values(summary))
    pictures = {k: self._wandb.Image(p) for k, p in images.items() if os.path.exists(p)}
    if pictures:
      self.run.log(pictures, step=self.last_step)

  def close(self, failed: bool = False) -> None:
    if self.run is not None:
      self.run.finish(exit_code=1 if failed else 0)
      self.run = None


def open_wandb(log_cfg, cfg_dict: Mapping[str, Any], directory: str, *, name: str,
               group: str | None) -> WandbSink:
  """A W&B run for the run (or trial) writing into `directory`; `name` and `group` are used
  where `log.wandb_name` / `log.wandb_group` are unset. An init that fails (no login, no
  network) is a ConfigError saying what to do."""
  import wandb  # the optional extra: imported only for runs with log.wandb=True

  os.makedirs(directory, exist_ok=True)
  id_path = os.path.join(directory, RUN_ID_FILE)
  run_id = open(id_path).read().strip() if os.path.exists(id_path) else None
  try:
    run = wandb.init(
        project=log_cfg.wandb_project, entity=log_cfg.wandb_entity,
        group=log_cfg.wandb_group or group, name=log_cfg.wandb_name or name,
        config=config_lib.flatten(cfg_dict), id=run_id, resume="allow" if run_id else None,
        # read here, not once per process by wandb: each run sees the WANDB_DIR of its time
        dir=os.environ.get("WANDB_DIR") or directory, reinit="create_new")
  except Exception as e:  # noqa: BLE001 - wandb raises its own errors (UsageError, CommError)
    text = " ".join(str(e).split()) or type(e).__name__
    raise ConfigError(f"log.wandb=True: wandb.init failed: {text} (run `wandb login`, or set "
                      "WANDB_MODE=offline to log without a connection)") from None
  if run_id is None:
    with open(id_path, "w", encoding="utf-8") as f:
      f.write(run.id + "\n")
  return WandbSink(run, wandb)


def sinks(config, cfg_dict: Mapping[str, Any], directory: str, *, name: str,
          group: str | None = None, enabled: bool = True) -> list:
  """The extra sinks of a metrics writer in `directory`: a W&B run with `log.wandb`, else
  none (and `wandb` is not imported)."""
  if not enabled or not config.log.wandb:
    return []
  return [open_wandb(config.log, cfg_dict, directory, name=name, group=group)]


__all__ = ["RUN_ID_FILE", "WandbSink", "open_wandb", "sinks"]
