"""Runs that survive damage and bad input, end to end (issue "Runs and sweeps that survive
corruption, concurrency and bad input"): each case ends with one clear line and a non-zero exit,
or falls back to what is good, and nothing already saved is lost."""

import json
import os
import subprocess
import sys
import time

import numpy as np
import pytest

from jaxgpt import data
from jaxgpt.train import run as train_run
from tests.helpers import ROOT, load_config


def _zero_middle_of_largest_array_file(step_dir) -> str:
  """Zeroes 64 bytes in the middle of the biggest data file under `step_dir/state/`."""
  found = []
  for root, _, names in os.walk(os.path.join(step_dir, "state")):
    for name in names:
      path = os.path.join(root, name)
      if "metadata" in path.lower() or name.startswith(("_", "manifest")):
        continue
      found.append((os.path.getsize(path), path))
  size, path = max(found)
  with open(path, "r+b") as f:
    f.seek(size // 2 - 32)
    f.write(b"\0" * 64)
  return path


@pytest.fixture(scope="module")
def clean_run(tmp_path_factory):
  """gpt.py:test to step 12, checkpoints at 6 and 12."""
  workdir = str(tmp_path_factory.mktemp("clean"))
  return workdir, train_run.train_and_evaluate(load_config("gpt", "test"), workdir)


def _copy_of(src, dst):
  import shutil
  shutil.copytree(src, dst)
  return str(dst)


@pytest.mark.parametrize("damage", ["state_bytes", "meta_json"])
def test_damaged_checkpoint_falls_back_to_the_older_one(clean_run, tmp_path, capfd, damage):
  """The newest checkpoint is damaged: the run says so in one line, renames it aside (kept),
  resumes from checkpoint 6 and ends exactly where the clean run ended."""
  workdir = _copy_of(clean_run[0], tmp_path / "run")
  step12 = os.path.join(workdir, "checkpoints", "12")
  if damage == "state_bytes":
    _zero_middle_of_largest_array_file(step12)
  else:
    with open(os.path.join(step12, "meta", "metadata"), "r+b") as f:
      f.seek(10)
      f.write(b"\0\0\0{{{")
  capfd.readouterr()
  out = train_run.train_and_evaluate(load_config("gpt", "test"), workdir)
  err = capfd.readouterr().err
  lines = [ln for ln in err.splitlines() if "checkpoint 12 is damaged" in ln]
  assert len(lines) == 1 and "falling back to checkpoint 6" in lines[0], err[-2000:]
  assert os.path.isdir(step12 + ".damaged")  # left on disk, no longer listed
  assert out["steps"] == 12 and out["final_val_loss"] == clean_run[1]["final_val_loss"]


def _cli(args, cwd=ROOT, timeout=300, **env):
  return subprocess.run([sys.executable, "-m", "jaxgpt.main", *args], cwd=cwd,
                        capture_output=True, text=True, timeout=timeout,
                        env=dict(os.environ, JAX_PLATFORMS="cpu", **env))


def _one_error_line(proc, *needles):
  lines = [ln for ln in proc.stderr.splitlines() if ln.startswith("error: ")]
  assert proc.returncode != 0 and len(lines) == 1, proc.stderr[-3000:]
  assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
  for n in needles:
    assert n in lines[0], lines[0]
  return lines[0]


def test_bad_inputs_end_with_one_line(tmp_path):
  cfg = ["--config", "configs/gpt.py:test"]
  # A workdir that is a file, and one that cannot be created.
  (tmp_path / "afile").write_text("x")
  _one_error_line(_cli(cfg + ["--workdir", str(tmp_path / "afile")]), "is a file")
  _one_error_line(_cli(cfg + ["--workdir", str(tmp_path / "afile" / "sub")]),
                  "cannot create workdir")
  # A config file that raises.
  bad = tmp_path / "raises.py"
  bad.write_text("def get_config(variants=''):\n  raise RuntimeError('boom in the config')\n")
  _one_error_line(_cli(["--config", str(bad), "--workdir", str(tmp_path / "w")]),
                  "raises.py", "RuntimeError: boom in the config")


def test_damaged_token_shard_and_nan_at_step_one(tmp_path):
  rng = np.random.default_rng(0)
  for split in ("train", "val"):
    data.write_shard(tmp_path / f"tok_{split}.bin", rng.integers(0, 60, 5000).astype(np.uint16))
  shard = tmp_path / "tok_val.bin"
  shard.write_bytes(shard.read_bytes()[:3000])  # truncated: the header says 5000 tokens
  args = ["--config", "configs/gpt.py:test", "--config.data.name=shards",
          f"--config.data.train_pattern={tmp_path}/tok_train.bin",
          f"--config.data.val_pattern={tmp_path}/tok_val.bin", "--config.model.vocab_size=64"]
  _one_error_line(_cli(args + ["--workdir", str(tmp_path / "run")]), "tok_val.bin")
  # NaN / Inf loss at step 1: a clear line, exit 1, no checkpoint of the diverged state.
  run = tmp_path / "nan"
  proc = _cli(["--config", "configs/gpt.py:test", "--config.optimizer.lr=1e30",
               "--config.optimizer.warmup_frac=0.0", "--config.train.log_every=1",
               "--workdir", str(run)])
  _one_error_line(proc, "training diverged")
  assert proc.returncode == 1
  summary = json.load(open(run / "summary.json"))
  assert summary["stop_reason"] == "diverged"
  assert not os.listdir(run / "checkpoints") or all(
      int(d) < summary["steps"] for d in os.listdir(run / "checkpoints") if d.isdigit())


def test_busy_workdir_names_the_holder(tmp_path):
  holder = subprocess.Popen(
      [sys.executable, "-c", "import sys, time\nfrom jaxgpt.train.workdir import WorkdirLock\n"
       "with WorkdirLock(sys.argv[1]):\n  print('held', flush=True)\n  time.sleep(120)\n",
       str(tmp_path / "run")], cwd=ROOT, stdout=subprocess.PIPE, text=True)
  try:
    assert holder.stdout.readline().strip() == "held"
    t0 = time.time()
    proc = _cli(["--config", "configs/gpt.py:test", "--workdir", str(tmp_path / "run")])
    _one_error_line(proc, f"pid {holder.pid}", "in use")
    assert time.time() - t0 < 120
  finally:
    holder.kill()
    holder.wait()


def test_empty_sweep_space_is_one_line(tmp_path):
  proc = subprocess.run(
      [sys.executable, "-m", "jaxgpt.sweep", "--config", "configs/sweeps/grid2d.py:test",
       "--workdir", str(tmp_path / "sweep"), "--config.space={}"], cwd=ROOT,
      capture_output=True, text=True, timeout=300, env=dict(os.environ, JAX_PLATFORMS="cpu"))
  _one_error_line(proc, "space", "at least one knob")
