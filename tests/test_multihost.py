"""Multi-host: `jax.distributed` initialisation choices, and a real 2-process run on CPU.

The 2-process run goes through `scripts/launch_local.py` (localhost coordinator, gloo
collectives, one CPU device per process) and must match a 1-process run of the same config,
with each process reading its own, disjoint rows of every global batch.
"""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from jaxgpt import config as config_lib
from jaxgpt.parallel import distributed
from tests.helpers import ROOT, load_config


def _dist(**kw):
  cfg = load_config("gpt", "test").distributed
  return dict(cfg.to_dict(), **kw)


@pytest.mark.parametrize("cfg,env,want", [
    (_dist(), {}, None),  # a plain single process
    (_dist(initialize="never"), {"JAX_COORDINATOR_ADDRESS": "h:1", "JAX_NUM_PROCESSES": "2"},
     None),
    (_dist(), {"JAX_COORDINATOR_ADDRESS": "h:1", "JAX_NUM_PROCESSES": "2", "JAX_PROCESS_ID": "1"},
     {"coordinator_address": "h:1", "num_processes": 2, "process_id": 1}),
    (_dist(), {"JAX_COORDINATOR_ADDRESS": "h:1", "JAX_NUM_PROCESSES": "1"}, None),
    (_dist(coordinator_address="c:9", num_processes=4, process_id=3),
     {"JAX_COORDINATOR_ADDRESS": "h:1", "JAX_NUM_PROCESSES": "2"},
     {"coordinator_address": "c:9", "num_processes": 4, "process_id": 3}),  # config wins
    (_dist(), {"SLURM_JOB_ID": "7", "SLURM_STEP_NODELIST": "n[1-2]", "SLURM_NTASKS": "2",
               "SLURM_PROCID": "0", "SLURM_LOCALID": "0"}, {}),  # JAX's SLURM detection
    (_dist(), {"SLURM_JOB_ID": "7", "SLURM_STEP_NODELIST": "n1", "SLURM_NTASKS": "1",
               "SLURM_PROCID": "0", "SLURM_LOCALID": "0"}, None),  # a 1-task allocation
    (_dist(), {"OMPI_MCA_orte_hnp_uri": "1;tcp://10.0.0.1:5", "OMPI_COMM_WORLD_SIZE": "4",
               "OMPI_COMM_WORLD_RANK": "2"}, {}),  # JAX's Open MPI detection
    (_dist(initialize="always"), {}, {}),
])
def test_init_args(cfg, env, want):
  assert distributed.init_args(cfg, env) == want


def test_distributed_config_errors():
  with pytest.raises(ValueError, match="distributed.initialize='sometimes'"):
    config_lib.validate(load_config("gpt", "test", distributed__initialize="sometimes"))
  with pytest.raises(ValueError, match=r"distributed.process_id=2 .*num_processes=2"):
    config_lib.validate(load_config("gpt", "test", distributed__num_processes=2,
                                    distributed__process_id=2))
  with pytest.raises(ValueError, match="distributed.coordinator_address='nohost'"):
    config_lib.validate(load_config("gpt", "test", distributed__coordinator_address="nohost"))
  with pytest.raises(ValueError, match="JAX_NUM_PROCESSES='two'"):
    distributed.init_args(_dist(), {"JAX_COORDINATOR_ADDRESS": "h:1",
                                    "JAX_NUM_PROCESSES": "two"})


def test_each_process_needs_its_own_batch_rows(monkeypatch):
  """Two processes on a mesh whose batch axes have one device: both would hold the same rows."""
  import jax

  from jaxgpt.parallel import mesh as mesh_lib
  from jaxgpt.train import setup
  monkeypatch.setattr(jax, "process_count", lambda: 2)
  cfg = load_config("gpt", "test")
  with pytest.raises(ValueError, match=r"data x fsdp = 1 must be a multiple of the number of "
                                       r"processes \(2\)"):
    setup.check_batch_layout(cfg, mesh_lib.make_mesh(cfg.mesh.to_dict()))


_WORKER = r"""
import json, os, numpy as np, jax
from jaxgpt import data
from jaxgpt.parallel import distributed
from jaxgpt.train import loop
from jaxgpt.train import run as train_run
from tests.helpers import load_config
WORK = os.environ["MH_WORKDIR"]
cfg = load_config("gpt", "test", train__steps=4, train__eval_every=100,
                  **json.load(open(WORK + "/shards.json")))
assert distributed.initialize(cfg.distributed)
assert jax.process_count() == 2 and jax.device_count() == 2, (jax.process_count(), jax.devices())
it = data.train_iterator(data.prepare(cfg.data), seq_len=cfg.data.seq_len,
                         global_batch_size=cfg.train.batch_size, seed=cfg.train.seed,
                         process_index=jax.process_index(), process_count=jax.process_count())
np.save(f"{WORK}/rows_{jax.process_index()}.npy", np.stack([next(it)["inputs"] for _ in range(4)]))
train_run.train_and_evaluate(cfg, WORK + "/run")
print("OK", jax.process_index())
"""


@pytest.mark.slow
def test_two_process_run_matches_one_process(tmp_path):
  from jaxgpt import data
  from jaxgpt.train import run as train_run
  from tests.test_parallel import tiny_shards
  shards = tiny_shards(str(tmp_path))
  json.dump(shards, open(tmp_path / "shards.json", "w"))
  env = dict(os.environ, MH_WORKDIR=str(tmp_path), PYTHONPATH=str(ROOT), TF_CPP_MIN_LOG_LEVEL="3",
             XLA_FLAGS="--xla_backend_optimization_level=0")
  proc = subprocess.run([sys.executable, str(ROOT / "scripts" / "launch_local.py"), "-n", "2",
                         "--timeout", "540", "--", sys.executable, "-c", _WORKER],
                        capture_output=True, text=True, timeout=600, env=env, cwd=str(ROOT))
  assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-3000:]
  assert "[p0] OK 0" in proc.stdout and "[p1] OK 1" in proc.stdout, proc.stdout[-3000:]

  # Disjoint rows, which together are the 1-process global batch.
  cfg = load_config("gpt", "test", train__steps=4, train__eval_every=100, **shards)
  rows = [np.load(tmp_path / f"rows_{p}.npy") for p in (0, 1)]
  it = data.train_iterator(data.prepare(cfg.data), seq_len=cfg.data.seq_len,
                           global_batch_size=cfg.train.batch_size, seed=cfg.train.seed)
  for step in range(4):
    whole = next(it)["inputs"]
    np.testing.assert_array_equal(np.concatenate([rows[0][step], rows[1][step]]), whole)
    assert not {r.tobytes() for r in rows[0][step]} & {r.tobytes() for r in rows[1][step]}

  # Only process 0 wrote the files; the losses match a 1-process run.
  one = train_run.train_and_evaluate(cfg, str(tmp_path / "one"))
  two = json.load(open(tmp_path / "run" / "summary.json"))
  assert two["process_count"] == 2
  assert two["mesh"] == {"data": 2, "fsdp": 1, "tensor": 1, "expert": 1}
  assert abs(two["final_val_loss"] - one["final_val_loss"]) < 1e-5, (two, one)
  read = lambda d: {r["step"]: r["train_loss"] for r in map(json.loads, open(d / "metrics.jsonl"))
                    if "train_loss" in r}
  got, want = read(tmp_path / "run"), read(tmp_path / "one")
  assert sorted(got) == [2, 4] and all(abs(got[s] - want[s]) < 1e-5 for s in got), (got, want)
  lines = open(tmp_path / "run" / "metrics.jsonl").read().splitlines()
  assert len(lines) == len(open(tmp_path / "one" / "metrics.jsonl").read().splitlines())
