"""The "lm_eval" run hook: `eval.tasks` run on a finished single run's final parameters.

Registered on import (`python -m jaxgpt.main` imports this module); lm-eval itself is imported
only when a run sets `eval.tasks`, so runs without it never load it. Before anything is built
(`train_and_evaluate` calls the hook's check), the tasks are resolved: a missing lm-eval package,
an unknown task name or a missing task file is one ConfigError line. At the end of a finished
run (stop reason steps, target or time cap) the tasks run through `jaxgpt.lm_eval.adapter` and
their scores, `lm_eval/<task>/<metric>`, are merged into summary.json. Cohorts (sweep trials)
and multi-process runs are not evaluated: run `python -m jaxgpt.lm_eval` on their workdir.
"""

from __future__ import annotations

import importlib.util
import os
import sys

import jax

from jaxgpt import files, registry
from jaxgpt.errors import ConfigError
from jaxgpt.train.loop import FINISHED

SUMMARY = "summary.json"
INSTALL = "pip install 'jaxgpt[lm_eval]'"


def _adapter():
  # lm-eval is an optional extra and slow to import: loaded only for runs with eval.tasks
  from jaxgpt.lm_eval import adapter
  return adapter


def check(config) -> None:
  """`eval.tasks` resolve (before training): the package is there and every task exists."""
  if not config.eval.tasks:
    return
  if importlib.util.find_spec("lm_eval") is None:
    raise ConfigError(f"eval.tasks={tuple(config.eval.tasks)!r} needs lm-eval, which is not "
                      f"installed: {INSTALL}")
  _adapter().resolve_tasks(config.eval.tasks)


def evaluate_at_end(info, carry, summary) -> dict | None:
  """The run hook: a finished single run with `eval.tasks` is scored; the scores are merged
  into summary.json and returned."""
  cfg = info.configs[0]
  if info.k != 1 or not cfg.eval.tasks or summary["stop_reason"] not in FINISHED:
    return None
  if jax.process_count() > 1:
    print("[jaxgpt] eval.tasks needs a single process; run python -m jaxgpt.lm_eval on the "
          "workdir", file=sys.stderr)
    return None
  adapter = _adapter()
  lm = adapter.JaxgptLM(loaded=(cfg, info.run, carry.params))
  scores = adapter.evaluate(lm, cfg.eval.tasks, limit=cfg.eval.limit,
                            num_fewshot=cfg.eval.num_fewshot)
  path = os.path.join(info.workdir, SUMMARY)
  on_disk = files.read_json(path) if os.path.exists(path) else {}
  files.atomic_write_json(path, dict(on_disk, **scores))
  return scores


registry.RUN_HOOKS.register("lm_eval", registry.RunHook(on_end=evaluate_at_end, check=check))
