"""Sweep workers as separate processes on one SQLite study: kill and restart, and two at once.

The workers train with the injected closed-form trainer (tests.sweep_closed_form.py), which
logs every trial it trains, so the tests can count who ran what.
"""

import json
import os
import signal
import subprocess
import sys
import time

import optuna
from optuna.trial import TrialState

from jaxgpt.sweep import study as study_lib
from tests.conftest import ROOT
from tests.sweep_closed_form import final_loss

WORKER = """
import sys, faulthandler
faulthandler.dump_traceback_later(150, exit=True)  # a hung worker shows where, then exits
from jaxgpt.sweep import runner, spec
from tests.sweep_closed_form import closed_form, one_group
s = spec.load_sweep("configs/sweeps/grid2d.py:test")
s.unlock()
s.seeds, s.cohort_size, s.heartbeat_s, s.grace_s = (0, 1, 2), 2, 1, 2
s.lock()
counts = runner.run_worker(s, sys.argv[1], train_fn=closed_form, group_fn=one_group,
                           traced_keys=(), progress=False, poll_s=0.2)
# Trial configs are validated by the registered model families, which import JAX; the injected
# trainer keeps the rest of these workers light.
print(counts)
"""
POINTS = sorted((x, y, s) for x in (0.01, 0.03) for y in (0.9, 0.95) for s in (0, 1, 2))


def _start(workdir, log, delay):
  env = dict(os.environ, SWEEP_TRAIN_LOG=str(log), SWEEP_TRAIN_DELAY_S=str(delay))
  return subprocess.Popen([sys.executable, "-c", WORKER, str(workdir)], cwd=ROOT, env=env,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _trials(workdir):
  try:
    # open_storage takes the claim lock, so this poll never races a worker creating tables
    storage = study_lib.open_storage(f"sqlite:///{workdir}/study.db")
    return optuna.load_study(study_name="grid2d", storage=storage).get_trials()
  except KeyError:  # the study is not created yet
    return []


def _log(path):
  with open(path, encoding="utf-8") as f:
    return [json.loads(line) for line in f]


def _finish(proc, timeout=240):
  out, _ = proc.communicate(timeout=timeout)
  assert proc.returncode == 0, out


def _check_complete_once(trials):
  done = [t for t in trials if t.state == TrialState.COMPLETE]
  assert sorted((t.params["x"], t.params["y"], t.user_attrs["seed"]) for t in done) == POINTS
  for t in done:
    assert t.value == final_loss(t.params["x"], t.params["y"], t.user_attrs["seed"])
  return done


def test_killed_worker_loses_and_duplicates_nothing(tmp_path):
  log = tmp_path / "train.log"
  # Each trial of A sleeps 1.5 s, so the cohort seen mid-flight is still running when A is
  # killed even on a loaded machine (0.4 s once lost that race under xdist).
  a = _start(tmp_path, log, delay=1.5)
  deadline = time.time() + 180
  while time.time() < deadline:  # wait until A is mid-cohort with some trials finished
    states = [t.state for t in _trials(tmp_path)]
    if states.count(TrialState.COMPLETE) >= 2 and states.count(TrialState.RUNNING) == 2:
      break
    assert a.poll() is None, a.communicate()[0]
    time.sleep(0.05)
  a.send_signal(signal.SIGKILL)
  a.wait()
  before = {t.number: t.value for t in _trials(tmp_path) if t.state == TrialState.COMPLETE}
  killed = [t.number for t in _trials(tmp_path) if t.state == TrialState.RUNNING]
  assert len(before) >= 2 and len(killed) == 2

  b = _start(tmp_path, log, delay=0.0)
  _finish(b)
  trials = _trials(tmp_path)
  done = _check_complete_once(trials)
  # Finished trials are kept as they were; the killed ones are failed (stale heartbeat) and
  # their retries ran to completion.
  assert {t.number: t.value for t in done if t.number in before} == before
  failed = [t for t in trials if t.state == TrialState.FAIL]
  assert sorted(t.number for t in failed) == sorted(killed)
  retried = {t.system_attrs.get("failed_trial") for t in done} - {None}
  assert retried == set(killed)


def test_two_workers_never_run_the_same_trial(tmp_path):
  log = tmp_path / "train.log"
  workers = [_start(tmp_path, log, delay=0.05) for _ in range(2)]
  for w in workers:
    _finish(w)
  _check_complete_once(_trials(tmp_path))
  runs = sorted((r["lr"], r["momentum"], r["seed"]) for r in _log(log))
  assert runs == POINTS  # every trial trained exactly once, across both processes
