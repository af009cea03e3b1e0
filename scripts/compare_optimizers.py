"""Muon+AdamW against AdamW on a config's proxy, each tuned over learning rates and seeds.

  python scripts/compare_optimizers.py --config configs/gpt.py:cpu \
      --out docs/compare_optimizers.json
  python scripts/compare_optimizers.py --seeds=0,1,2 --skip=adamw:0.012 --cache runs.jsonl
  python scripts/compare_optimizers.py --smoke       # tiny, for the tests

Every (optimizer, lr, seed) run trains the same step budget from the config; the table reports,
per optimizer, each learning rate's mean final val_bpb (whole validation split) over the seeds,
and the best learning rate with its seed spread (max - min). Prints a table, writes JSON.
"""

from __future__ import annotations

import json
import os
import tempfile

from absl import app, flags

from jaxgpt import cli
from jaxgpt.train.loop import train_and_evaluate

GRID = {
    "muon": dict(lrs=(0.0075, 0.015, 0.03, 0.06), overrides=dict(name="muon")),
    "adamw": dict(lrs=(7.5e-4, 1.5e-3, 3e-3, 6e-3, 1.2e-2),
                  overrides=dict(name="adamw", weight_decay=0.1)),
}

_CONFIG = flags.DEFINE_string("config", "configs/gpt.py:cpu", "Config file[:variants].")
_SEEDS = cli.define_int_list("seeds", [0, 1], "Seeds per (optimizer, lr), e.g. --seeds=0,1.")
_OUT = flags.DEFINE_string("out", None, "JSON output path.")
_SMOKE = flags.DEFINE_bool("smoke", False, "Tiny run for tests (configs/gpt.py:test, one seed, "
                           "one lr per optimizer).")
_CACHE = flags.DEFINE_string("cache", None, "JSONL of finished runs: rerunning skips them "
                             "(resumable).")
_SKIP = flags.DEFINE_list("skip", [], "OPT:LR grid points not to run, comma-separated (e.g. "
                          "--skip=adamw:0.012 when clearly worse).")


def parse_skip(items: list[str]) -> set[tuple[str, float]]:
  """["adamw:0.012"] -> {("adamw", 0.012)}; a malformed item is a usage error."""
  out = set()
  for item in items:
    opt, sep, lr = item.partition(":")
    try:
      if not sep or opt not in GRID:
        raise ValueError
      out.add((opt, float(lr)))
    except ValueError:
      raise app.UsageError(f"--skip item {item!r}: expected OPT:LR with OPT one of "
                           f"{', '.join(GRID)}") from None
  return out


def compare(config_arg: str, seeds: list[int], grid: dict, cache: str | None = None) -> dict:
  """Trains every (optimizer, lr, seed) of `grid`; prints the table and returns the JSON."""
  done = {}
  if cache and os.path.exists(cache):
    for line in open(cache):
      r = json.loads(line)
      done[(r["config"], r["optimizer"], r["lr"], r["seed"])] = r
  runs = []
  for opt, spec in grid.items():
    for lr in spec["lrs"]:
      for seed in seeds:
        if (config_arg, opt, lr, seed) in done:
          runs.append(done[(config_arg, opt, lr, seed)])
          print(f"{opt:6s} lr={lr:<8g} seed={seed}  val_bpb={runs[-1]['val_bpb']:.4f}  (cached)")
          continue
        cfg = cli.load_config(config_arg, {
            "optimizer.lr": lr, **{f"optimizer.{k}": v for k, v in spec["overrides"].items()},
            "train.seed": seed, "train.progress_bar": False})
        with tempfile.TemporaryDirectory() as workdir:
          s = train_and_evaluate(cfg, workdir)
        runs.append(dict(config=config_arg, optimizer=opt, lr=lr, seed=seed,
                         val_bpb=s["val_bpb"], final_val_loss=s["final_val_loss"],
                         steps=s["steps"], train_time_s=s["train_time_s"]))
        if cache:
          with open(cache, "a") as f:
            f.write(json.dumps(runs[-1]) + "\n")
        print(f"{opt:6s} lr={lr:<8g} seed={seed}  val_bpb={s['val_bpb']:.4f}  "
              f"({s['train_time_s']:.0f}s)", flush=True)
  summary = {}
  print(f"\n{'optimizer':<10}{'lr':>10}{'mean bpb':>10}{'spread':>9}")
  for opt in grid:
    best = None
    for lr in grid[opt]["lrs"]:
      vals = [r["val_bpb"] for r in runs if r["optimizer"] == opt and r["lr"] == lr]
      mean, spread = sum(vals) / len(vals), max(vals) - min(vals)
      print(f"{opt:<10}{lr:>10g}{mean:>10.4f}{spread:>9.4f}")
      if best is None or mean < best["mean_val_bpb"]:
        best = dict(lr=lr, mean_val_bpb=mean, spread=spread, vals=vals)
    summary[opt] = best
  if {"muon", "adamw"} <= set(summary):
    gap = summary["adamw"]["mean_val_bpb"] - summary["muon"]["mean_val_bpb"]
    spread = max(summary["muon"]["spread"], summary["adamw"]["spread"])
    print(f"\nbest muon {summary['muon']['mean_val_bpb']:.4f} vs best adamw "
          f"{summary['adamw']['mean_val_bpb']:.4f}: gap {gap:.4f}, largest seed spread "
          f"{spread:.4f}")
    summary["gap"], summary["largest_spread"] = gap, spread
  return dict(config=config_arg, seeds=seeds, runs=runs, best=summary)


def main(argv):
  cli.no_arguments(argv)
  config_arg, seeds, grid = _CONFIG.value, _SEEDS.value, GRID
  if _SMOKE.value:
    config_arg, seeds = "configs/gpt.py:test", [0]
    grid = {k: dict(v, lrs=v["lrs"][:1]) for k, v in GRID.items()}
  if not seeds:
    raise app.UsageError("--seeds needs at least one seed, e.g. --seeds=0,1")
  skip = parse_skip(_SKIP.value)
  grid = {o: dict(v, lrs=tuple(lr for lr in v["lrs"] if (o, lr) not in skip))
          for o, v in grid.items()}
  out = compare(config_arg, seeds, grid, _CACHE.value)
  if _OUT.value:
    with open(_OUT.value, "w") as f:
      json.dump(out, f, indent=2)
  return 0


if __name__ == "__main__":
  cli.run(main)
