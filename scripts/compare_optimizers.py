"""Muon+AdamW against AdamW on a config's proxy, each tuned over learning rates and seeds.

  python scripts/compare_optimizers.py --config configs/gpt.py:cpu --out docs/compare_optimizers.json
  python scripts/compare_optimizers.py --smoke       # tiny, for the tests

Every (optimizer, lr, seed) run trains the same step budget from the config; the table reports,
per optimizer, each learning rate's mean final val_bpb (whole validation split) over the seeds,
and the best learning rate with its seed spread (max - min). Prints a table, writes JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "scripts"))

GRID = {
    "muon": dict(lrs=(0.0075, 0.015, 0.03, 0.06), overrides=dict(name="muon")),
    "adamw": dict(lrs=(7.5e-4, 1.5e-3, 3e-3, 6e-3, 1.2e-2),
                  overrides=dict(name="adamw", weight_decay=0.1)),
}


def main(argv=None):
  ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  ap.add_argument("--config", default="configs/gpt.py:cpu")
  ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
  ap.add_argument("--out", default=None)
  ap.add_argument("--smoke", action="store_true")
  ap.add_argument("--cache", default=None,
                  help="JSONL of finished runs: rerunning skips them (resumable)")
  ap.add_argument("--skip", nargs="*", default=[], metavar="OPT:LR",
                  help="grid points not to run (e.g. adamw:0.012 when clearly worse)")
  args = ap.parse_args(argv)
  from bench_train import load_config
  from jaxgpt.train.loop import train_and_evaluate

  grid = GRID
  if args.smoke:
    args.config, args.seeds = "configs/gpt.py:test", [0]
    grid = {k: dict(v, lrs=v["lrs"][:1]) for k, v in GRID.items()}
  done = {}
  if args.cache and os.path.exists(args.cache):
    for line in open(args.cache):
      r = json.loads(line)
      done[(r["config"], r["optimizer"], r["lr"], r["seed"])] = r
  skip = {(o, float(lr)) for o, lr in (item.split(":") for item in args.skip)}
  grid = {o: dict(v, lrs=tuple(lr for lr in v["lrs"] if (o, lr) not in skip))
          for o, v in grid.items()}
  runs = []
  for opt, spec in grid.items():
    for lr in spec["lrs"]:
      for seed in args.seeds:
        if (args.config, opt, lr, seed) in done:
          runs.append(done[(args.config, opt, lr, seed)])
          print(f"{opt:6s} lr={lr:<8g} seed={seed}  val_bpb={runs[-1]['val_bpb']:.4f}  (cached)")
          continue
        cfg = load_config(args.config)
        cfg.unlock()
        cfg.optimizer.update(lr=lr, **spec["overrides"])
        cfg.train.update(seed=seed, progress_bar=False)
        with tempfile.TemporaryDirectory() as workdir:
          s = train_and_evaluate(cfg, workdir)
        runs.append(dict(config=args.config, optimizer=opt, lr=lr, seed=seed,
                         val_bpb=s["val_bpb"], final_val_loss=s["final_val_loss"],
                         steps=s["steps"], train_time_s=s["train_time_s"]))
        if args.cache:
          with open(args.cache, "a") as f:
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
          f"{summary['adamw']['mean_val_bpb']:.4f}: gap {gap:.4f}, largest seed spread {spread:.4f}")
    summary["gap"], summary["largest_spread"] = gap, spread
  out = dict(config=args.config, seeds=args.seeds, runs=runs, best=summary)
  if args.out:
    with open(args.out, "w") as f:
      json.dump(out, f, indent=2)
  return out


if __name__ == "__main__":
  main()
