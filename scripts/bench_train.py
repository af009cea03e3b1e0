"""Training throughput of a config: tokens/s over timed steps (compile and eval excluded).

  python scripts/bench_train.py --config configs/gpt.py:cpu --steps 100 --out bench_train.json
  python scripts/bench_train.py --smoke          # tiny, for the tests

Prints a table and writes JSON. Runs the real training loop in a temporary workdir with
evaluation pushed past the end, so the figure is the loop's own (data pipeline included).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)


def load_config(spec: str):
  path, _, variants = spec.partition(":")
  mod_spec = importlib.util.spec_from_file_location("bench_cfg", os.path.join(ROOT, path)
                                                    if not os.path.isabs(path) else path)
  mod = importlib.util.module_from_spec(mod_spec)
  mod_spec.loader.exec_module(mod)
  return mod.get_config(variants)


def main(argv=None):
  ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  ap.add_argument("--config", default="configs/gpt.py:cpu")
  ap.add_argument("--steps", type=int, default=100)
  ap.add_argument("--out", default=None, help="JSON output path")
  ap.add_argument("--smoke", action="store_true", help="tiny run for tests")
  ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                  help="config override, e.g. --set model.lazy_proj_freq=1 (repeatable)")
  args = ap.parse_args(argv)
  if args.smoke:
    args.config, args.steps = "configs/gpt.py:test", 6

  import jax
  from jaxgpt.models import flops_per_token
  from jaxgpt.train.loop import train_and_evaluate

  cfg = load_config(args.config)
  cfg.unlock()
  for item in args.set:
    key, _, value = item.partition("=")
    section, field = key.split(".")
    cfg[section][field] = type(cfg[section][field])(value) if cfg[section][field] is not None \
        else value
  cfg.train.update(steps=args.steps, eval_every=10**9, log_every=max(1, args.steps // 5),
                   checkpoint_every=10**9, progress_bar=False)
  with tempfile.TemporaryDirectory() as workdir:
    s = train_and_evaluate(cfg, workdir)
  row = {
      "config": args.config + "".join(f" {o}" for o in args.set), "steps": args.steps, "tokens_per_step": s["tokens_per_step"],
      "num_params": s["num_params"], "tokens_per_s": s["tokens_per_s"],
      "step_time_ms": 1e3 * s["train_time_s"] / max(1, args.steps),
      "compile_time_s": s["compile_time_s"],
      "model_tflops_per_s": s["tokens_per_s"] * s["flops_per_token"] / 1e12,
      "backend": jax.default_backend(), "devices": jax.device_count(),
      "machine": f"{platform.machine()} {os.cpu_count()} cpus",
  }
  print(f"{'config':<48}{'tokens/step':>12}{'tokens/s':>12}{'ms/step':>10}{'TFLOP/s':>9}")
  print(f"{row['config']:<48}{row['tokens_per_step']:>12,}{row['tokens_per_s']:>12,.0f}"
        f"{row['step_time_ms']:>10.1f}{row['model_tflops_per_s']:>9.3f}")
  if args.out:
    with open(args.out, "w") as f:
      json.dump(row, f, indent=2)
  return row


if __name__ == "__main__":
  main()
