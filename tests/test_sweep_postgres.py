"""Sweeps on PostgreSQL, for real: a server of the tests' own (tests/pg_server.py), worker
processes on it (one SIGKILLed mid-cohort and restarted), two workers reaching stage 2 at once,
the advisory claim lock, and the error for a missing driver.

Without the server binaries or psycopg the server tests skip, naming what is missing; with
JAXGPT_REQUIRE_POSTGRES=1 (set by .ci/run) they fail instead. The workers train with the
closed-form stand-in (tests/sweep_closed_form.py), in seconds.
"""

import collections
import json
import os
import signal
import subprocess
import sys
import threading
import time

import optuna
import pytest
from optuna.trial import TrialState

from jaxgpt.sweep import runner, spec
from jaxgpt.sweep import study as study_lib
from tests import pg_server
from tests.conftest import ROOT
from tests.sweep_closed_form import closed_form, final_loss, one_group

WORKER = r"""
import json, os, sys, time, faulthandler
faulthandler.dump_traceback_later(100, exit=True)  # a hung worker shows where, then exits
import optuna
from jaxgpt.sweep import runner, spec
from tests.sweep_closed_form import closed_form, one_group

workdir, url, mode = sys.argv[1:4]
s = spec.load_sweep("configs/sweeps/grid2d.py:test")
s.unlock()
s.seeds, s.cohort_size, s.heartbeat_s, s.grace_s = (0, 1, 2), 2, 1, 3
if mode == "stage2":
  s.seeds = (0, 1)
  s.stage2.enabled, s.stage2.top_k, s.stage2.points = True, 1, 3
s.lock()


def train(configs, run_dir, **kw):  # logs which trials this process starts, then trains them
  with open(os.path.join(run_dir, "trials.json"), encoding="utf-8") as f:
    numbers = [t["number"] for t in json.load(f)]
  with open(os.environ["SWEEP_START_LOG"], "a", encoding="utf-8") as f:
    f.write(json.dumps({"pid": os.getpid(), "numbers": numbers,
                        "run": os.path.basename(run_dir)}) + "\n")
  return closed_form(configs, run_dir, **kw)


go = os.environ.get("SWEEP_GO_FILE")
if go:  # wait for the test's signal, so that both workers open stage 2 at the same moment
  delay = float(os.environ.get("SWEEP_ENQUEUE_DELAY_S", "0"))
  enqueue = optuna.Study.enqueue_trial

  def slow_enqueue(self, *a, **k):  # widens the window in which two enqueues could interleave
    time.sleep(delay)
    return enqueue(self, *a, **k)

  optuna.Study.enqueue_trial = slow_enqueue
  open(f"{go}.ready.{os.getpid()}", "w").close()
  while not os.path.exists(go):
    time.sleep(0.005)

counts = runner.run_worker(s, workdir, storage=url, train_fn=train, group_fn=one_group,
                           traced_keys=(), progress=False, poll_s=0.2)
print(json.dumps(counts))
"""
POINTS = sorted((x, y, s) for x in (0.01, 0.03) for y in (0.9, 0.95) for s in (0, 1, 2))


@pytest.fixture(scope="module")
def pg():
  reason = pg_server.unavailable()
  if reason:
    if os.environ.get("JAXGPT_REQUIRE_POSTGRES") == "1":
      pytest.fail(f"JAXGPT_REQUIRE_POSTGRES=1 but no PostgreSQL test server: {reason}")
    pytest.skip(f"no PostgreSQL test server: {reason}")
  server = pg_server.PgServer().start()
  yield server
  server.stop()


def _start(workdir, url, mode, log, delay, **env):
  env = dict(os.environ, SWEEP_TRAIN_LOG=str(log), SWEEP_START_LOG=f"{log}.start",
             SWEEP_TRAIN_DELAY_S=str(delay), **env)
  return subprocess.Popen([sys.executable, "-c", WORKER, str(workdir), url, mode], cwd=ROOT,
                          env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _finish(proc, timeout=120):
  out, _ = proc.communicate(timeout=timeout)
  assert proc.returncode == 0, out
  return json.loads(out.strip().splitlines()[-1])


def _lines(path):
  if not os.path.exists(path):
    return []
  with open(path, encoding="utf-8") as f:
    return [json.loads(line) for line in f if line.endswith("\n")]


def _trials(url, name="grid2d"):
  # open_storage, not a bare URL: a bare URL makes Optuna create the tables outside the claim
  # lock, racing the workers that are creating them (DuplicateTable "studies").
  try:
    return optuna.load_study(study_name=name, storage=study_lib.open_storage(url)).get_trials()
  except KeyError:  # not created yet
    return []


def _key(t):
  return (t.params["x"], t.params["y"], t.user_attrs["seed"])


# ------------------------------------------------------------------------------------------
# Without a server.

def test_missing_driver_is_one_clear_error_line(tmp_path):
  url = "postgresql://sweeper:s3cret@127.0.0.1:9/sweeps"
  code = ("import runpy, sys; sys.modules['psycopg'] = None; "  # as if psycopg were missing
          "sys.argv = ['jaxgpt.sweep'] + sys.argv[1:]; "
          "runpy.run_module('jaxgpt.sweep', run_name='__main__', alter_sys=True)")
  r = subprocess.run([sys.executable, "-c", code, "--config", "configs/sweeps/grid2d.py:test",
                      "--workdir", str(tmp_path), "--storage", url, "--noprogress"],
                     cwd=ROOT, capture_output=True, text=True, timeout=120)
  assert r.returncode == 2, r.stderr
  errors = [line for line in r.stderr.splitlines() if line.startswith("error: ")]
  assert len(errors) == 1 and "Traceback" not in r.stderr, r.stderr
  assert "pip install 'jaxgpt[postgres]'" in errors[0] and "psycopg" in errors[0]
  assert "s3cret" not in r.stderr  # the password is masked


def test_postgres_urls_mean_psycopg_and_bad_ones_are_value_errors(monkeypatch):
  for url in ("postgresql://u@h:5432/db", "postgres://u@h:5432/db"):
    assert study_lib.normalize_url(url) == "postgresql+psycopg://u@h:5432/db"
  assert study_lib.normalize_url("postgresql+psycopg2://u@h/db") == "postgresql+psycopg2://u@h/db"
  assert study_lib.storage_url("w", "postgresql://u@h/db") == "postgresql+psycopg://u@h/db"
  with pytest.raises(ValueError, match="invalid storage URL"):
    study_lib.open_storage("not a url")
  monkeypatch.setitem(sys.modules, "psycopg", None)
  with pytest.raises(study_lib.StorageError, match=r"pip install 'jaxgpt\[postgres\]'"):
    study_lib.open_storage("postgresql://u@127.0.0.1:9/db")


# ------------------------------------------------------------------------------------------
# On a server.

def test_unreachable_server_is_a_value_error(pg):
  with pytest.raises(ValueError, match="cannot open storage postgresql"):
    study_lib.open_storage(f"postgresql://postgres:pw@127.0.0.1:{pg.port}/no_such_db")


def test_advisory_lock_excludes_other_sessions_and_dies_with_its_holder(pg, tmp_path):
  url = pg.create_database("lock")
  holder = subprocess.Popen(
      [sys.executable, "-c", "import sys, time\nfrom jaxgpt.sweep import study\n"
       "with study.claim_lock(sys.argv[1], 'grid2d'):\n  print('held', flush=True)\n"
       "  time.sleep(120)\n", url], cwd=ROOT, stdout=subprocess.PIPE, text=True)
  try:
    assert holder.stdout.readline().strip() == "held"
    got = threading.Event()

    def take():
      with study_lib.claim_lock(url, "grid2d"):
        got.set()

    with study_lib.claim_lock(url, "grid2d-stage2"):  # another study's lock is independent
      with study_lib.claim_lock(url, "grid2d-stage2"):  # and re-entrant
        pass
    t = threading.Thread(target=take, daemon=True)
    t.start()
    assert not got.wait(1.0)  # blocked by the other process
    holder.send_signal(signal.SIGKILL)  # the server drops a dead client's lock
    assert got.wait(30)
    t.join(10)
  finally:
    holder.kill()
    holder.wait()


def test_killed_worker_and_a_second_one_complete_every_trial_once(pg, tmp_path):
  url = pg.create_database("killed")
  log = tmp_path / "train.log"
  # Two "machines" (workdirs a and b) on one study. Each cohort of A takes 4 x 1.5 s, so it is
  # still running when A is killed; B is quick.
  a = _start(tmp_path / "a", url, "stage1", log, delay=1.5)
  b = _start(tmp_path / "b", url, "stage1", log, delay=0.2)
  deadline, killed = time.time() + 90, None
  while time.time() < deadline:
    assert a.poll() is None, a.communicate()[0]
    states = {t.number: t.state for t in _trials(url)}
    mine = [r["numbers"] for r in _lines(f"{log}.start") if r["pid"] == a.pid]
    if (mine and list(states.values()).count(TrialState.COMPLETE) >= 2
        and all(states.get(n) == TrialState.RUNNING for n in mine[-1])):
      killed = mine[-1]
      break
    time.sleep(0.05)
  assert killed, "worker A never got mid-cohort"
  a.send_signal(signal.SIGKILL)
  a.wait()
  assert all(t.state == TrialState.RUNNING for t in _trials(url) if t.number in killed)
  before = {t.number: t.value for t in _trials(url) if t.state == TrialState.COMPLETE}

  a2 = _start(tmp_path / "a", url, "stage1", log, delay=0.0)  # A restarted
  counts = [_finish(b), _finish(a2)]
  assert all(c["running"] == 0 and c["waiting"] == 0 for c in counts)
  trials = _trials(url)
  done = [t for t in trials if t.state == TrialState.COMPLETE]
  assert sorted(_key(t) for t in done) == POINTS  # every (point, seed) completed exactly once
  for t in done:
    assert t.value == final_loss(*_key(t))
  assert {t.number: t.value for t in done if t.number in before} == before
  # The killed trials were failed (stale heartbeat) and each was retried once, to completion.
  assert sorted(t.number for t in trials if t.state == TrialState.FAIL) == sorted(killed)
  assert sorted(t.system_attrs["failed_trial"] for t in done
                if "failed_trial" in t.system_attrs) == sorted(killed)
  killed_points = {_key(t) for t in trials if t.number in killed}
  runs = collections.Counter((r["lr"], r["momentum"], r["seed"]) for r in _lines(log))
  for p in POINTS:  # trained once; a killed trial at most once more (if A got that far)
    assert runs[p] == 1 or (p in killed_points and runs[p] == 2), (p, runs[p])


def test_two_workers_reaching_stage2_together_enqueue_its_grid_once(pg, tmp_path):
  url = pg.create_database("stage2")
  s = spec.load_sweep("configs/sweeps/grid2d.py:test")
  s.unlock()
  s.seeds, s.cohort_size = (0, 1), 2
  s.lock()
  # Stage 1 runs to the end first, so both workers find it finished and open stage 2 at once.
  runner.run_worker(s, str(tmp_path / "stage1"), storage=url, train_fn=closed_form,
                    group_fn=one_group, traced_keys=(), progress=False, poll_s=0.05)
  log, go = tmp_path / "train.log", str(tmp_path / "go")
  workers = [_start(tmp_path / f"w{i}", url, "stage2", log, delay=0.0, SWEEP_GO_FILE=go,
                    SWEEP_ENQUEUE_DELAY_S="0.02") for i in range(2)]
  deadline = time.time() + 60
  while len([f for f in os.listdir(tmp_path) if f.startswith("go.ready.")]) < 2:
    for w in workers:
      assert w.poll() is None, w.communicate()[0]
    assert time.time() < deadline
    time.sleep(0.02)
  open(go, "w").close()
  for w in workers:
    _finish(w)

  study = optuna.load_study(study_name="grid2d-stage2", storage=study_lib.open_storage(url))
  grid = study.user_attrs["grid"]
  trials = study.get_trials()
  keys = [_key(t) for t in trials]
  expected = sorted((p["x"], p["y"], sd) for p in grid for sd in (0, 1))
  assert len(grid) >= 4 and sorted(keys) == expected  # the grid was enqueued exactly once
  assert all(t.state == TrialState.COMPLETE for t in trials)
  runs = collections.Counter((r["lr"], r["momentum"], r["seed"]) for r in _lines(log))
  assert sorted(runs) == expected and set(runs.values()) == {1}  # each trained exactly once
