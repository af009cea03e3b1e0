"""parameter-golf baseline against PR #1434's best combination (`best_proxy`), at equal time
(scripts/compare_param_golf.py).

Each (arm, seed) is one `python -m jaxgpt.main` process with the same training-time cap
(`train.max_time_s`, the clock the LR schedule runs on, so both arms complete their decay);
compile and evaluation time come on top and are reported (`wall_s`, the run's wall_time_s;
`proc_s`, the whole `jaxgpt.main` process including the export). Each
run ends with the int8+zlib export (`export.at_end`): the table gives the full-split val_bpb,
the round-trip val_bpb of the artifact (`val_bpb_roundtrip`, from a fresh process reading only
the artifact) and artifact_bytes, then per arm the mean over seeds and the spread (max - min).
Resumable: a run whose workdir already holds a summary with val_bpb_roundtrip is not run again
(an interrupted one resumes from its checkpoint).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time

from absl import app

from jaxgpt import files
from jaxgpt.bench import output

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # the checkout
ARMS = {"baseline": "configs/param_golf.py:{size}",
        "best_proxy": "configs/param_golf.py:best_proxy,{size}"}
KEYS = ("steps", "train_time_s", "wall_time_s", "process_wall_s", "val_bpb", "val_bpb_roundtrip",
        "artifact_bytes")

RUNS = output.Table(
    output.Column("arm", "arm", width=10, left=True), output.Column("seed", "seed", width=4),
    output.Column("steps", "steps", width=6),
    output.Column("train_s", "train_time_s", ".1f", width=8),
    output.Column("wall_s", "wall_time_s", ".1f", width=7),
    output.Column("proc_s", "process_wall_s", ".1f", width=7),
    output.Column("val_bpb", "val_bpb", ".4f", width=8),
    output.Column("roundtrip", "val_bpb_roundtrip", ".4f", width=9),
    output.Column("artifact", "artifact_bytes", ",", width=11))
ARMS_TABLE = output.Table(
    output.Column("arm", "arm", width=10, left=True),
    output.Column("mean bpb", "mean_val_bpb", ".4f", width=8),
    output.Column("spread", "spread_val_bpb", ".4f", width=7),
    output.Column("mean rt", "mean_val_bpb_roundtrip", ".4f", width=8),
    output.Column("spread", "spread_val_bpb_roundtrip", ".4f", width=7),
    output.Column("artifact", lambda a: max(a["artifact_bytes"]), ",", width=11))


def run_one(config: str, workdir: str, seed: int, time_s: float | None, extra: list[str]) -> dict:
  """One (arm, seed) as a `python -m jaxgpt.main` process, or its finished summary (cached)."""
  summary_path = os.path.join(workdir, "summary.json")
  timing_path = os.path.join(workdir, "compare_process.json")  # this script's own record
  if os.path.exists(summary_path):
    s = files.read_json(summary_path)
    if s.get("val_bpb_roundtrip") is not None:
      timing = files.read_json(timing_path) if os.path.exists(timing_path) else {}
      return dict(s, process_wall_s=timing.get("process_wall_s"), cached=True)
  cmd = [sys.executable, "-m", "jaxgpt.main", "--config", config, "--workdir", workdir,
         f"--config.train.seed={seed}", "--config.train.progress_bar=false",
         "--config.export.at_end=true", *extra]
  if time_s is not None:
    cmd.append(f"--config.train.max_time_s={time_s}")
  t0 = time.time()
  proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
  if proc.returncode != 0:
    raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
  wall = time.time() - t0
  files.atomic_write_json(timing_path, {"process_wall_s": wall})
  return dict(files.read_json(summary_path), process_wall_s=wall, cached=False)


def _mean_spread(runs: list[dict], key: str) -> tuple[float, float]:
  """Mean and spread (max - min) of `key` over `runs`."""
  vals = [r[key] for r in runs]
  return sum(vals) / len(vals), max(vals) - min(vals)


def compare(size: str, seeds: list[int], arms: list[str], time_s: float | None, root: str,
            extra: list[str]) -> dict:
  """Runs (or reuses) every (arm, seed); prints the tables and returns the JSON."""
  runs = []
  print(RUNS.header())
  for arm in arms:
    config = ARMS[arm].format(size=size)
    for seed in seeds:
      workdir = os.path.join(root, f"{arm}-{size}-seed{seed}")
      s = run_one(config, workdir, seed, time_s, extra)
      runs.append(dict(arm=arm, config=config, seed=seed, workdir=workdir, cached=s["cached"],
                       **{k: s.get(k) for k in KEYS}))
      print(RUNS.line(runs[-1]) + ("  (cached)" if runs[-1]["cached"] else ""), flush=True)
  per_arm = {}
  for arm in arms:
    rs = [r for r in runs if r["arm"] == arm]
    (bpb, bpb_sp), (rt, rt_sp) = _mean_spread(rs, "val_bpb"), _mean_spread(rs, "val_bpb_roundtrip")
    per_arm[arm] = dict(mean_val_bpb=bpb, spread_val_bpb=bpb_sp, mean_val_bpb_roundtrip=rt,
                        spread_val_bpb_roundtrip=rt_sp,
                        artifact_bytes=[r["artifact_bytes"] for r in rs])
  print("\n" + ARMS_TABLE.render({"arm": arm, **a} for arm, a in per_arm.items()))
  out = dict(size=size, seeds=seeds, time_s=time_s, runs=runs, arms=per_arm)
  if len(per_arm) == 2:
    gap = (per_arm["baseline"]["mean_val_bpb_roundtrip"] -
           per_arm["best_proxy"]["mean_val_bpb_roundtrip"])
    spread = max(a["spread_val_bpb_roundtrip"] for a in per_arm.values())
    print(f"\nbaseline - best_proxy (round trip): {gap:+.4f} bpb; largest seed spread {spread:.4f}")
    out.update(gap_roundtrip=gap, largest_spread_roundtrip=spread)
  return out


def run(size: str, seeds: list[int], arms: list[str], time_s: float | None, root: str,
        extra: list[str] = (), out: str | None = None) -> dict:
  """`compare`, written to `out`."""
  if not seeds:
    raise app.UsageError("--seeds needs at least one seed, e.g. --seeds=0,1")
  result = compare(size, seeds, arms, time_s, root, list(extra))
  output.emit(result, out)
  return result
