"""deep_nested through the real trainer: the seed mode's meta-update via host_update resumes
bitwise (straight 8 steps == 4 + restore + 4), logs its multipliers, and runs in vmapped
cohorts from the sweep configs (nested_grid:test end to end; the cpu variants' structure)."""

import functools
import json
import pathlib

import jax
import numpy as np
import orbax.checkpoint as ocp

from jaxgpt import report
from jaxgpt.sweep import cohort, runner, space, spec
from jaxgpt.train import run as train_run
from tests.helpers import load_config


def _config(steps):
  c = load_config("gpt", "test")
  c.optimizer.update(name="deep_nested", lr=3e-3, b1=0.9, b2=0.999, eps=1e-8, weight_decay=0.2,
                     grad_clip=0.0, schedule="constant", warmup_frac=0.0)
  c.optimizer.nested.update(meta_every=2, meta_lr=1e-2)
  c.train.update(steps=steps, eval_every=2, log_every=1, eval_tokens=256)
  return c


def _state(workdir):
  path = pathlib.Path(workdir) / "checkpoints"
  step = max(int(p.name) for p in path.iterdir() if p.name.isdigit())
  return step, ocp.StandardCheckpointer().restore(path / str(step) / "state")


def _rows(workdir):
  return [json.loads(x) for x in (pathlib.Path(workdir) / "metrics.jsonl").read_text().split(
      "\n") if x.strip()]


def test_seed_mode_resumes_bitwise_and_logs_multipliers(tmp_path):
  train_run.train_and_evaluate(_config(8), str(tmp_path / "a"))
  train_run.train_and_evaluate(_config(4), str(tmp_path / "b"))
  train_run.train_and_evaluate(_config(8), str(tmp_path / "b"), allow_config_change=True)
  (sa, a), (sb, b) = _state(tmp_path / "a"), _state(tmp_path / "b")
  assert sa == sb == 8
  jax.tree.map(np.testing.assert_array_equal, a, b)  # params and optimizer state, bitwise
  logged = [r for r in _rows(tmp_path / "a") if "train_loss" in r]
  mults = [(r["opt/lr_mult_core"], r["opt/lr_mult_embed"]) for r in logged]
  assert all(0.1 <= m <= 2.0 for pair in mults for m in pair)
  assert len(set(mults)) > 1  # the meta-updates (steps 2, 4, 6) moved the controller
  rows_b = [r for r in _rows(tmp_path / "b") if "train_loss" in r]
  assert [r["opt/lr_mult_core"] for r in rows_b] == [m for m, _ in mults]
  hist = a["opt_state"][0]
  assert int(hist["hist_len"]) == 4  # meta-updates at steps 2, 4, 6 and 8


def test_nested_grid_cpu_variants_structure():
  for variants, base, batch in (("cpu", "configs/moe.py", 8),
                                ("cpu,titans", "configs/titans.py", 4),
                                ("titans,cpu", "configs/titans.py", 4)):
    s = spec.load_sweep(f"configs/sweeps/nested_grid.py:{variants}")
    assert (s.base.config, s.base.variants) == (base, "cpu")
    assert s.base.overrides.train.batch_size == batch  # the run size follows the model
    dims = {d.name: d for d in space.dims_from_config(s.space)}
    assert dims["M"].key == "optimizer.nested.momentum_layers"
    assert dims["C"].key == "optimizer.nested.controller_layers"
    assert dims["M"].values == dims["C"].values == (1, 2, 3, 4, 5, 6)
    assert len(space.grid_points(list(dims.values()))) * len(s.seeds) == 108
    assert tuple(s.seeds) == (0, 1, 2) and s.cohort_size == 3
    o = s.base.overrides.optimizer
    assert (o.name, o.nested.mode, o.lr, o.weight_decay, o.grad_clip, o.nested.meta_lr,
            o.nested.meta_every) == ("deep_nested", "seed", 3e-4, 0.2, 0.0, 1e-4, 50)
    assert s.base.overrides.train.steps == 500
  for variants, key, arm in (("cpu", "train.steps", "nested"), ("cpu,muon", "train.steps", "muon"),
                             ("cpu,time", "train.max_time_s", "nested")):
    s = spec.load_sweep(f"configs/sweeps/nested_vs_muon.py:{variants}")
    assert s.base.config == "configs/moe.py" and tuple(s.seeds) == (0, 1, 2)
    assert [d.key for d in space.dims_from_config(s.space)] == [key]
    assert ("optimizer" in s.base.overrides) == (arm == "nested")
  for variants in ("titans,cpu", "cpu,titans"):
    s = spec.load_sweep(f"configs/sweeps/nested_vs_muon.py:{variants}")
    o = s.base.overrides.optimizer.nested
    assert (o.momentum_layers, o.controller_layers) == (4, 5)
    t = s.base.overrides.train
    assert (t.batch_size, t.final_eval_tokens) == (4, 65536)  # the TitanMAC grid's run size


def test_nested_grid_end_to_end_in_cohorts(tmp_path):
  """nested_grid:test with the real trainer: M in (1, 2) x 2 seeds = 2 cohorts of K = 2, each
  meta-updating its stacked state through host_update."""
  s = spec.load_sweep("configs/sweeps/nested_grid.py:test")
  train = functools.partial(cohort.train_cohort, solo_steps=0, final_eval_tokens=256)
  counts = runner.run_worker(s, str(tmp_path), progress=False, train_fn=train)
  assert counts["done"] == 4
  runs = sorted((tmp_path / "runs").iterdir())
  assert len(runs) == 2
  for run in runs:
    seen = set()
    for i in range(2):
      rows = [json.loads(x) for x in (run / f"trial_{i}" / "metrics.jsonl").read_text().split(
          "\n") if x.strip()]
      logged = [r for r in rows if "opt/lr_mult_core" in r]
      assert logged and all(0.1 <= r["opt/lr_mult_core"] <= 2.0 for r in logged)
      seen.add(logged[0]["opt/lr_mult_core"])
      summary = json.loads((run / f"trial_{i}" / "summary.json").read_text())
      assert summary["opt/lr_mult_core"] == logged[-1]["opt/lr_mult_core"]  # the last logged
    assert len(seen) == 2  # per-trial controllers (initialised from each trial's parameters)
  records, _ = report.load_records(str(tmp_path))  # and the sweep's record of each trial
  assert all(0.1 <= r["summary"]["opt/lr_mult_core"] <= 2.0 for r in records)
