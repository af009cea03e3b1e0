"""Muon+AdamW against AdamW (scripts/compare_optimizers.py) on a config's proxy,
each tuned over learning rates and seeds.

Every (optimizer, lr, seed) run trains the same step budget from the config; the table reports,
per optimizer, each learning rate's mean final val_bpb (whole validation split) over the seeds,
and the best learning rate with its seed spread (max - min). Prints a table, writes JSON.
"""

from __future__ import annotations

import json
import os
import tempfile

from absl import app

from jaxgpt import cli
from jaxgpt.bench import output
from jaxgpt.train.run import train_and_evaluate

GRID = {
    "muon": dict(lrs=(0.0075, 0.015, 0.03, 0.06), overrides=dict(name="muon")),
    "adamw": dict(lrs=(7.5e-4, 1.5e-3, 3e-3, 6e-3, 1.2e-2),
                  overrides=dict(name="adamw", weight_decay=0.1)),
}

MEANS = output.Table(output.Column("optimizer", "optimizer", width=9, left=True),
                     output.Column("lr", "lr", "g", width=9),
                     output.Column("mean bpb", "mean", ".4f", width=9),
                     output.Column("spread", "spread", ".4f", width=8))


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
  summary, means = {}, []
  for opt in grid:
    best = None
    for lr in grid[opt]["lrs"]:
      vals = [r["val_bpb"] for r in runs if r["optimizer"] == opt and r["lr"] == lr]
      mean, spread = sum(vals) / len(vals), max(vals) - min(vals)
      means.append(dict(optimizer=opt, lr=lr, mean=mean, spread=spread))
      if best is None or mean < best["mean_val_bpb"]:
        best = dict(lr=lr, mean_val_bpb=mean, spread=spread, vals=vals)
    summary[opt] = best
  print("\n" + MEANS.render(means))
  if {"muon", "adamw"} <= set(summary):
    gap = summary["adamw"]["mean_val_bpb"] - summary["muon"]["mean_val_bpb"]
    spread = max(summary["muon"]["spread"], summary["adamw"]["spread"])
    print(f"\nbest muon {summary['muon']['mean_val_bpb']:.4f} vs best adamw "
          f"{summary['adamw']['mean_val_bpb']:.4f}: gap {gap:.4f}, largest seed spread "
          f"{spread:.4f}")
    summary["gap"], summary["largest_spread"] = gap, spread
  return dict(config=config_arg, seeds=seeds, runs=runs, best=summary)


def run(config_arg: str, seeds: list[int], grid: dict, skip: list[str] = (),
        cache: str | None = None, out: str | None = None) -> dict:
  """`compare` on `grid` less the `skip` points (OPT:LR strings), written to `out`."""
  if not seeds:
    raise app.UsageError("--seeds needs at least one seed, e.g. --seeds=0,1")
  skipped = parse_skip(list(skip))
  grid = {o: dict(v, lrs=tuple(lr for lr in v["lrs"] if (o, lr) not in skipped))
          for o, v in grid.items()}
  result = compare(config_arg, seeds, grid, cache)
  output.emit(result, out)
  return result
