"""parameter-golf baseline against the seed's best combination (`best_proxy`), at equal time.

  python scripts/compare_param_golf.py                  # param_golf.py:cpu vs :best_proxy,cpu
  python scripts/compare_param_golf.py --time_s 180 --seeds=0,1 --out docs/param_golf.json
  python scripts/compare_param_golf.py --smoke          # tiny, for the tests

Each (arm, seed) is one `python -m jaxgpt.main` process with the same training-time cap
(`train.max_time_s`, the clock the LR schedule runs on, so both arms complete their decay);
compile and evaluation time come on top and are reported (`wall_s`, the run's wall_time_s;
`proc_s`, the whole `jaxgpt.main` process including the export). Each
run ends with the int8+zlib export (`export.at_end`): the table gives the full-split val_bpb,
the round-trip val_bpb of the artifact (`val_bpb_roundtrip`, from a fresh process reading only
the artifact) and artifact_bytes, then per arm the mean over seeds and the spread (max - min).
Resumable: a run whose workdir already holds a summary with val_bpb_roundtrip is not run again
(an interrupted one resumes from its checkpoint). Prints a table, writes JSON.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

from absl import app, flags

from jaxgpt import cli

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ARMS = {"baseline": "configs/param_golf.py:{size}",
        "best_proxy": "configs/param_golf.py:best_proxy,{size}"}
KEYS = ("steps", "train_time_s", "wall_time_s", "process_wall_s", "val_bpb", "val_bpb_roundtrip",
        "artifact_bytes")

_SIZE = flags.DEFINE_string("size", "cpu", "The size variant both arms use.")
_SEEDS = cli.define_int_list("seeds", [0, 1], "Seeds per arm, e.g. --seeds=0,1.")
_ARMS = flags.DEFINE_list("arms", list(ARMS), f"Arms to run, comma-separated: {', '.join(ARMS)}.")
_TIME_S = flags.DEFINE_float("time_s", None, "Training-time cap for every run (default: the "
                             "config's).")
_ROOT = flags.DEFINE_string("root", os.path.join(ROOT, "checkpoints", "compare_param_golf"),
                            "One workdir per (arm, seed) under this directory.")
_OUT = flags.DEFINE_string("out", None, "JSON output path.")
_SMOKE = flags.DEFINE_bool("smoke", False, "Test variants, one seed, a few steps.")
flags.register_validator("arms", lambda arms: bool(arms) and set(arms) <= set(ARMS),
                         f"give one or more of {', '.join(ARMS)}, comma-separated")


def _read_json(path: str) -> dict:
  with open(path) as f:
    return json.load(f)


def run_one(config: str, workdir: str, seed: int, time_s: float | None, extra: list[str]) -> dict:
  summary_path = os.path.join(workdir, "summary.json")
  timing_path = os.path.join(workdir, "compare_process.json")  # this script's own record
  if os.path.exists(summary_path):
    s = _read_json(summary_path)
    if s.get("val_bpb_roundtrip") is not None:
      timing = _read_json(timing_path) if os.path.exists(timing_path) else {}
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
  with open(timing_path, "w") as f:
    json.dump({"process_wall_s": wall}, f)
  return dict(_read_json(summary_path), process_wall_s=wall, cached=False)


def _mean_spread(runs: list[dict], key: str) -> tuple[float, float]:
  vals = [r[key] for r in runs]
  return sum(vals) / len(vals), max(vals) - min(vals)


def compare(size: str, seeds: list[int], arms: list[str], time_s: float | None, root: str,
            extra: list[str]) -> dict:
  """Runs (or reuses) every (arm, seed); prints the tables and returns the JSON."""
  runs = []
  print(f"{'arm':<11}{'seed':>5}{'steps':>7}{'train_s':>9}{'wall_s':>8}{'proc_s':>8}"
        f"{'val_bpb':>9}{'roundtrip':>10}{'artifact':>12}")
  for arm in arms:
    config = ARMS[arm].format(size=size)
    for seed in seeds:
      workdir = os.path.join(root, f"{arm}-{size}-seed{seed}")
      s = run_one(config, workdir, seed, time_s, extra)
      r = dict(arm=arm, config=config, seed=seed, workdir=workdir, cached=s["cached"],
               **{k: s.get(k) for k in KEYS})
      runs.append(r)
      proc = "-" if r["process_wall_s"] is None else f"{r['process_wall_s']:.1f}"
      print(f"{arm:<11}{seed:>5}{r['steps']:>7}{r['train_time_s']:>9.1f}{r['wall_time_s']:>8.1f}"
            f"{proc:>8}{r['val_bpb']:>9.4f}{r['val_bpb_roundtrip']:>10.4f}"
            f"{r['artifact_bytes']:>12,}" + ("  (cached)" if r["cached"] else ""), flush=True)
  per_arm = {}
  print(f"\n{'arm':<11}{'mean bpb':>9}{'spread':>8}{'mean rt':>9}{'spread':>8}{'artifact':>12}")
  for arm in arms:
    rs = [r for r in runs if r["arm"] == arm]
    (bpb, bpb_sp), (rt, rt_sp) = _mean_spread(rs, "val_bpb"), _mean_spread(rs, "val_bpb_roundtrip")
    per_arm[arm] = dict(mean_val_bpb=bpb, spread_val_bpb=bpb_sp, mean_val_bpb_roundtrip=rt,
                        spread_val_bpb_roundtrip=rt_sp,
                        artifact_bytes=[r["artifact_bytes"] for r in rs])
    print(f"{arm:<11}{bpb:>9.4f}{bpb_sp:>8.4f}{rt:>9.4f}{rt_sp:>8.4f}"
          f"{max(r['artifact_bytes'] for r in rs):>12,}")
  out = dict(size=size, seeds=seeds, time_s=time_s, runs=runs, arms=per_arm)
  if len(per_arm) == 2:
    gap = (per_arm["baseline"]["mean_val_bpb_roundtrip"] -
           per_arm["best_proxy"]["mean_val_bpb_roundtrip"])
    spread = max(a["spread_val_bpb_roundtrip"] for a in per_arm.values())
    print(f"\nbaseline - best_proxy (round trip): {gap:+.4f} bpb; largest seed spread {spread:.4f}")
    out.update(gap_roundtrip=gap, largest_spread_roundtrip=spread)
  return out


def main(argv):
  cli.no_arguments(argv)
  size, seeds, time_s, extra = _SIZE.value, _SEEDS.value, _TIME_S.value, []
  if _SMOKE.value:
    size, seeds, time_s = "test", seeds[:1], None
    extra = ["--config.train.steps=2", "--config.train.eval_every=2",
             "--config.export.fp16_max_numel=1024"]
  if not seeds:
    raise app.UsageError("--seeds needs at least one seed, e.g. --seeds=0,1")
  out = compare(size, seeds, _ARMS.value, time_s, _ROOT.value, extra)
  if _OUT.value:
    with open(_OUT.value, "w") as f:
      json.dump(out, f, indent=2)
  return 0


if __name__ == "__main__":
  cli.run(main)
