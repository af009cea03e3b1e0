"""Resume equality: runs interrupted by SIGINT or killed by SIGKILL, then resumed with the same
command, end bitwise equal to an uninterrupted run (parameters, losses; timing keys excluded)."""

import json
import os
import pathlib
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
STEPS = 60
ARGS = ["--config", "configs/gpt.py:test", f"--config.train.steps={STEPS}",
        "--config.train.log_every=1", "--config.train.eval_every=10",
        "--config.train.checkpoint_every=10", "--config.train.batch_size=8",
        "--config.data.seq_len=64", "--config.model.d_model=64"]
TIMING = ("elapsed_s", "tokens_per_s")


def _cmd(workdir):
  return [sys.executable, "-m", "jaxgpt.main", *ARGS, "--workdir", str(workdir)]


def _env():
  return {**os.environ, "PYTHONUNBUFFERED": "1"}


def _run(workdir):
  proc = subprocess.run(_cmd(workdir), cwd=ROOT, env=_env(), capture_output=True, text=True,
                        timeout=300)
  assert proc.returncode == 0, proc.stderr[-3000:]


def _last_logged_step(workdir):
  path = pathlib.Path(workdir) / "metrics.jsonl"
  if not path.exists():
    return 0
  steps = [json.loads(ln)["step"] for ln in path.read_text().splitlines() if ln.strip()]
  return max(steps, default=0)


def _interrupt(workdir, sig, after_step):
  proc = subprocess.Popen(_cmd(workdir), cwd=ROOT, env=_env(), stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True)
  deadline = time.time() + 240
  while _last_logged_step(workdir) < after_step:
    assert proc.poll() is None, proc.stderr.read()[-3000:]
    assert time.time() < deadline, "run never reached the interrupt step"
    time.sleep(0.01)
  proc.send_signal(sig)
  _, err = proc.communicate(timeout=240)
  stopped_at = _last_logged_step(workdir)
  assert stopped_at < STEPS, "the run finished before it could be interrupted"
  if sig == signal.SIGINT:
    assert proc.returncode == 130, err[-3000:]
  return stopped_at


def _records(workdir):
  out = []
  for line in (pathlib.Path(workdir) / "metrics.jsonl").read_text().splitlines():
    r = json.loads(line)
    out.append({k: v for k, v in r.items() if k not in TIMING})
  return out


def _final_params(workdir):
  import orbax.checkpoint as ocp
  path = pathlib.Path(workdir) / "checkpoints"
  step = max(int(p.name) for p in path.iterdir() if p.name.isdigit())
  restored = ocp.StandardCheckpointer().restore(path / str(step) / "state")
  return step, restored["params"]


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
  workdir = tmp_path_factory.mktemp("uninterrupted")
  _run(workdir)
  return workdir


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGKILL], ids=["sigint", "sigkill"])
def test_resume_is_bitwise_equal(reference, tmp_path, sig):
  _interrupt(tmp_path, sig, after_step=25)
  _run(tmp_path)
  assert _records(tmp_path) == _records(reference)
  ref = json.loads((reference / "summary.json").read_text())
  got = json.loads((tmp_path / "summary.json").read_text())
  for key in ("final_val_loss", "val_bpb", "val_acc", "best_val_loss", "steps", "stop_reason"):
    assert got[key] == ref[key], key
  (s1, p1), (s2, p2) = _final_params(reference), _final_params(tmp_path)
  assert s1 == s2 == STEPS
  import jax
  for a, b in zip(jax.tree.leaves(p1), jax.tree.leaves(p2)):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
