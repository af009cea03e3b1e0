"""WorkdirLock: one run per workdir, busy/stale/other-host locks, unusable workdirs."""

import json
import os
import signal
import socket
import subprocess
import sys

import pytest

from jaxgpt.train.workdir import LOCK_NAME, WorkdirBusyError, WorkdirError, WorkdirLock
from tests.helpers import ROOT

# A second, real process: takes the lock, says so, holds it until stdin closes (or it is killed).
_HOLDER = r"""
import sys
from jaxgpt.train.workdir import WorkdirLock
with WorkdirLock(sys.argv[1]):
  print("locked", flush=True)
  sys.stdin.read()
print("released", flush=True)
"""


def _holder(workdir):
  proc = subprocess.Popen([sys.executable, "-c", _HOLDER, str(workdir)], stdin=subprocess.PIPE,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                          cwd=str(ROOT), env=dict(os.environ, PYTHONPATH=str(ROOT)))
  line = proc.stdout.readline()
  assert line.strip() == "locked", (line, proc.stderr.read() if proc.poll() is not None else "")
  return proc


def _dead_pid():
  proc = subprocess.Popen([sys.executable, "-c", "pass"])
  proc.wait()  # reaped: os.kill(pid, 0) now raises ProcessLookupError
  return proc.pid


def test_lock_record_and_release(tmp_path):
  wd = tmp_path / "run"
  with WorkdirLock(wd) as lock:
    assert lock.held
    rec = json.loads((wd / LOCK_NAME).read_text())
    assert rec["pid"] == os.getpid() and rec["host"] == socket.gethostname() and rec["started"]
  assert not (wd / LOCK_NAME).exists()
  with WorkdirLock(wd):  # free again
    pass


def test_second_process_is_refused_naming_host_and_pid(tmp_path):
  wd = tmp_path / "run"
  proc = _holder(wd)
  try:
    with pytest.raises(WorkdirBusyError) as err:
      with WorkdirLock(wd):
        pass
    msg = str(err.value)
    assert f"in use by pid {proc.pid} on host {socket.gethostname()}" in msg, msg
    assert "\n" not in msg and str(wd) in msg and "--workdir" in msg
  finally:
    proc.stdin.close()
    assert proc.stdout.readline().strip() == "released"
    proc.wait(timeout=30)
  with WorkdirLock(wd):  # the holder released it
    pass


def test_lock_of_a_killed_process_is_taken_over(tmp_path, capsys):
  wd = tmp_path / "run"
  proc = _holder(wd)
  proc.send_signal(signal.SIGKILL)  # no release: the record stays, the kernel drops the flock
  proc.wait(timeout=30)
  assert json.loads((wd / LOCK_NAME).read_text())["pid"] == proc.pid
  with WorkdirLock(wd):
    assert json.loads((wd / LOCK_NAME).read_text())["pid"] == os.getpid()
  err = capsys.readouterr().err.strip().splitlines()
  assert len(err) == 1 and f"stale lock of pid {proc.pid}" in err[0], err


def test_stale_record_of_a_dead_pid_is_taken_over(tmp_path, capsys):
  wd = tmp_path / "run"
  wd.mkdir()
  pid = _dead_pid()
  (wd / LOCK_NAME).write_text(json.dumps({"host": socket.gethostname(), "pid": pid,
                                          "started": "2026-12-03 07:12:00"}))
  with WorkdirLock(wd):
    pass
  assert f"taking over the stale lock of pid {pid}" in capsys.readouterr().err


def test_live_pid_on_this_host_is_busy_even_without_flock(tmp_path):
  """A record of a running process (flock not shared, e.g. another mount) is respected."""
  wd = tmp_path / "run"
  wd.mkdir()
  proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
  try:
    (wd / LOCK_NAME).write_text(json.dumps({"host": socket.gethostname(), "pid": proc.pid,
                                            "started": "x", "started_unix": 4e9}))
    with pytest.raises(WorkdirBusyError, match=f"in use by pid {proc.pid} on host"):
      WorkdirLock(wd).acquire()
  finally:
    proc.kill()
    proc.wait()


def test_lock_from_another_host_is_never_taken_over(tmp_path):
  wd = tmp_path / "run"
  wd.mkdir()
  (wd / LOCK_NAME).write_text(json.dumps({"host": "elsewhere-42", "pid": _dead_pid(),
                                          "started": "2026-12-03 07:12:00"}))
  with pytest.raises(WorkdirBusyError) as err:
    WorkdirLock(wd).acquire()
  msg = str(err.value)
  assert "on host elsewhere-42" in msg and "never taken over automatically" in msg, msg
  assert (wd / LOCK_NAME).exists()


def test_unusable_workdirs(tmp_path):
  f = tmp_path / "file"
  f.write_text("x")
  with pytest.raises(WorkdirError, match=r"workdir .*file is a file, not a directory"):
    WorkdirLock(f).acquire()
  # Root ignores permission bits, so "cannot be written" is a path under a regular file.
  with pytest.raises(WorkdirError, match=r"cannot create workdir .*file/run \(NotADirectoryError"):
    WorkdirLock(f / "run").acquire()


def test_disabled_lock_does_nothing(tmp_path):
  with WorkdirLock(tmp_path / "run", enabled=False) as lock:
    assert not lock.held
  assert not (tmp_path / "run").exists()


_RACER = r"""
import sys, time
from jaxgpt.train.workdir import WorkdirBusyError, WorkdirLock
time.sleep(max(0.0, float(sys.argv[2]) - time.time()))  # start together
try:
  with WorkdirLock(sys.argv[1]):
    print("won", flush=True)
    time.sleep(1.0)
except WorkdirBusyError as e:
  print("busy", flush=True)
"""


def test_simultaneous_starts_have_one_winner(tmp_path):
  import time
  start = time.time() + 1.0
  env = dict(os.environ, PYTHONPATH=str(ROOT))
  procs = [subprocess.Popen([sys.executable, "-c", _RACER, str(tmp_path / "run"), str(start)],
                            stdout=subprocess.PIPE, text=True, cwd=str(ROOT), env=env)
           for _ in range(6)]
  outs = sorted(p.communicate(timeout=60)[0].strip() for p in procs)
  assert outs == ["busy"] * 5 + ["won"], outs
