"""Training throughput of a config: tokens/s over timed steps (compile and eval excluded).

  python scripts/bench_train.py --config configs/gpt.py:cpu --steps 100 --out bench_train.json
  python scripts/bench_train.py --config configs/gated_ngpt.py:cpu --set optimizer.lazy_proj_freq=7
  python scripts/bench_train.py --smoke          # tiny, for the tests

Prints a table and writes JSON. Runs the real training loop in a temporary workdir with
evaluation pushed past the end, so the figure is the loop's own (data pipeline included).
`--set KEY=VALUE` (repeatable) overrides a config key; VALUE is read as the key's type.
"""

from __future__ import annotations

import json
import os
import platform
import tempfile
from typing import Any, Sequence

import jax
from absl import app, flags

from jaxgpt import cli
from jaxgpt import config as config_lib
from jaxgpt.train.loop import train_and_evaluate

_CONFIG = flags.DEFINE_string("config", "configs/gpt.py:cpu", "Config file[:variants].")
_STEPS = flags.DEFINE_integer("steps", 100, "Timed training steps.", lower_bound=1)
_OUT = flags.DEFINE_string("out", None, "JSON output path.")
_SMOKE = flags.DEFINE_bool("smoke", False, "Tiny run for tests (configs/gpt.py:test, 6 steps).")
_SET = flags.DEFINE_multi_string("set", [], "Config override KEY=VALUE, e.g. "
                                 "optimizer.lazy_proj_freq=1")

_BOOLS = {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}


def parse_value(text: str, kind: type | None) -> Any:
  """`text` as `kind` (the config field's type); "None" clears the field."""
  if text in ("None", "none", "null"):
    return None
  if kind is bool:
    if text.lower() not in _BOOLS:
      raise ValueError(f"{text!r} is not a bool (true or false)")
    return _BOOLS[text.lower()]
  return text if kind is None else kind(text)


def parse_sets(config_arg: str, items: Sequence[str]) -> dict[str, Any]:
  """`KEY=VALUE` strings -> {key: value}, each value read as the type of the config's field."""
  base = cli.load_config(config_arg)
  out = {}
  for item in items:
    key, sep, text = item.partition("=")
    if not sep:
      raise app.UsageError(f"--set {item!r}: expected KEY=VALUE")
    try:
      current = config_lib.get_key(base, key)
    except KeyError:
      raise app.UsageError(f"--set {item!r}: unknown config key {key!r}") from None
    section, _, field = key.rpartition(".")
    parent = config_lib.get_key(base, section) if section else base
    kind = type(current) if current is not None else parent.get_ref(field).get_type()
    try:
      out[key] = parse_value(text, kind)
    except ValueError as e:
      raise app.UsageError(f"--set {item!r}: {e}") from None
  return out


def bench(config_arg: str, steps: int, sets: Sequence[str] = ()) -> dict:
  """Trains `config_arg` (with `sets` applied) for `steps` steps; returns the table's row."""
  overrides = {**parse_sets(config_arg, sets), "train.steps": steps, "train.eval_every": 10**9,
               "train.log_every": max(1, steps // 5), "train.checkpoint_every": 10**9,
               "train.progress_bar": False}
  cfg = cli.load_config(config_arg, overrides)
  with tempfile.TemporaryDirectory() as workdir:
    s = train_and_evaluate(cfg, workdir)
  return {
      "config": config_arg + "".join(f" {o}" for o in sets), "steps": steps,
      "tokens_per_step": s["tokens_per_step"],
      "num_params": s["num_params"], "tokens_per_s": s["tokens_per_s"],
      "step_time_ms": 1e3 * s["train_time_s"] / max(1, steps),
      "compile_time_s": s["compile_time_s"],
      "model_tflops_per_s": s["tokens_per_s"] * s["flops_per_token"] / 1e12,
      "backend": jax.default_backend(), "devices": jax.device_count(),
      "machine": f"{platform.machine()} {os.cpu_count()} cpus",
  }


def main(argv):
  cli.no_arguments(argv)
  config_arg, steps = _CONFIG.value, _STEPS.value
  if _SMOKE.value:
    config_arg, steps = "configs/gpt.py:test", 6
  row = bench(config_arg, steps, _SET.value)
  print(f"{'config':<48}{'tokens/step':>12}{'tokens/s':>12}{'ms/step':>10}{'TFLOP/s':>9}")
  print(f"{row['config']:<48}{row['tokens_per_step']:>12,}{row['tokens_per_s']:>12,.0f}"
        f"{row['step_time_ms']:>10.1f}{row['model_tflops_per_s']:>9.3f}")
  if _OUT.value:
    with open(_OUT.value, "w") as f:
      json.dump(row, f, indent=2)
  return 0


if __name__ == "__main__":
  cli.run(main)
