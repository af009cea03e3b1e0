"""One run per workdir: an exclusive lock held for the life of the run.

    with WorkdirLock(workdir, enabled=jax.process_index() == 0):
      ...train...

`WorkdirLock` creates `workdir/.lock`, takes an exclusive `flock` on it (non-blocking) and writes
{"host", "pid", "started"} into it, in place (never by rename: a replaced file would be a new
inode, which another process could lock while this one still holds the old). The lock is released
and the file removed on exit; if the process dies instead, the kernel drops the flock, and the
record left behind is what the next run sees:

- flock held by another process: `WorkdirBusyError` naming its host, pid and start time.
- flock free, record of a pid on this host that is no longer running (or is a newer process that
  reused the pid): a stale lock, taken over with one line on stderr.
- flock free, record from another host: `WorkdirBusyError`, never taken over automatically (flock
  may not reach across hosts, e.g. on NFS, so that run may still be alive); delete the file once
  that run is known to be gone.

Where `fcntl` is missing (Windows) the lock is the exclusive creation of the file
(O_CREAT | O_EXCL) with the same staleness rules. A workdir that is a regular file, that cannot be
created (e.g. its parent is a regular file) or where the lock file cannot be written raises
`WorkdirError` (as root, permission bits do not stop writes, so only such paths fail there).
Multi-host runs: only the coordinator (process 0) takes the lock (`enabled=False` elsewhere).
"""

from __future__ import annotations

import contextlib
import datetime
import errno
import json
import os
import socket
import sys
import time
from typing import Any

try:
  import fcntl
except ImportError:  # Windows
  fcntl = None

LOCK_NAME = ".lock"


class WorkdirError(Exception):
  """The workdir cannot be used (one-line message)."""


class WorkdirBusyError(WorkdirError):
  """Another run holds the workdir (one-line message naming its host and pid)."""


def _describe(e: OSError) -> str:
  return f"{type(e).__name__}: [Errno {e.errno}] {e.strerror}" if e.strerror else repr(e)


def _pid_running(pid: int) -> bool:
  try:
    os.kill(pid, 0)
  except ProcessLookupError:
    return False
  except PermissionError:  # another user's process
    return True
  except OSError:
    return False
  return True


def _process_start(pid: int) -> float | None:
  """When `pid` started (Unix time, Linux /proc), or None where that is unknown."""
  try:
    with open(f"/proc/{pid}/stat") as f:
      fields = f.read().rsplit(")", 1)[1].split()
    ticks = int(fields[19])  # field 22, starttime, in clock ticks after boot
    with open("/proc/stat") as f:
      btime = next(int(line.split()[1]) for line in f if line.startswith("btime"))
    return btime + ticks / os.sysconf("SC_CLK_TCK")
  except (OSError, ValueError, IndexError, StopIteration):
    return None


def _holder_alive(rec: dict) -> bool:
  """Whether the process named by a record on this host still runs (and is that process)."""
  pid = rec.get("pid")
  if not isinstance(pid, int) or pid <= 0 or not _pid_running(pid):
    return False
  start, locked = _process_start(pid), rec.get("started_unix")
  if start is not None and isinstance(locked, (int, float)) and start > locked + 2:
    return False  # the pid was reused by a process that started after the lock was taken
  return True


class WorkdirLock:
  """Exclusive use of `workdir` by this process while the context is open (see module doc)."""

  def __init__(self, workdir: str | os.PathLike, *, enabled: bool = True):
    self.workdir = os.fspath(workdir)
    self.path = os.path.join(self.workdir, LOCK_NAME)
    self.enabled = enabled
    self._fd: int | None = None

  # -- messages ----------------------------------------------------------------------------------

  def _busy(self, rec: Any) -> WorkdirBusyError:
    if not isinstance(rec, dict) or "pid" not in rec:
      return WorkdirBusyError(f"workdir {self.workdir} is in use by another process (its lock "
                              f"{self.path} has no readable owner yet); wait for it or pass "
                              "another --workdir")
    started = f" (started {rec['started']})" if rec.get("started") else ""
    return WorkdirBusyError(f"workdir {self.workdir} is in use by pid {rec['pid']} on host "
                            f"{rec.get('host', '?')}{started}; wait for it or pass another "
                            "--workdir")

  def _other_host(self, rec: dict) -> WorkdirBusyError:
    started = f" (started {rec['started']})" if rec.get("started") else ""
    return WorkdirBusyError(f"workdir {self.workdir} is locked by pid {rec['pid']} on host "
                            f"{rec.get('host', '?')}{started}; a lock from another host is never "
                            f"taken over automatically: if that run has ended, delete {self.path}"
                            ", else pass another --workdir")

  def _stale(self, rec: dict) -> None:
    started = f", started {rec['started']}" if rec.get("started") else ""
    print(f"[jaxgpt] workdir {self.workdir}: taking over the stale lock of pid {rec['pid']} "
          f"(no longer running{started})", file=sys.stderr, flush=True)

  # -- helpers -----------------------------------------------------------------------------------

  def _prepare(self) -> None:
    if os.path.exists(self.workdir) and not os.path.isdir(self.workdir):
      raise WorkdirError(f"workdir {self.workdir} is a file, not a directory: pass another "
                         "--workdir")
    try:
      os.makedirs(self.workdir, exist_ok=True)
    except OSError as e:
      raise WorkdirError(f"cannot create workdir {self.workdir} ({_describe(e)}): pass another "
                         "--workdir") from None

  def _open(self, flags: int) -> int:
    try:
      return os.open(self.path, flags, 0o644)
    except FileExistsError:
      raise
    except OSError as e:
      raise WorkdirError(f"workdir {self.workdir} is not writable: cannot create {self.path} "
                         f"({_describe(e)})") from None

  @staticmethod
  def _read_fd(fd: int) -> Any:
    os.lseek(fd, 0, os.SEEK_SET)
    raw = b""
    while chunk := os.read(fd, 65536):
      raw += chunk
    try:
      return json.loads(raw.decode("utf-8")) if raw.strip() else None
    except (UnicodeDecodeError, ValueError):
      return None

  def _read_path(self, tries: int = 20) -> Any:
    """The holder's record (it may be between taking the lock and writing it: retry a little)."""
    for _ in range(tries):
      try:
        with open(self.path, "rb") as f:
          raw = f.read()
        rec = json.loads(raw.decode("utf-8")) if raw.strip() else None
      except FileNotFoundError:
        return None
      except (OSError, UnicodeDecodeError, ValueError):
        rec = None
      if isinstance(rec, dict):
        return rec
      time.sleep(0.05)
    return None

  def _write_record(self, fd: int) -> None:
    now = time.time()
    rec = {"host": socket.gethostname(), "pid": os.getpid(),
           "started": datetime.datetime.fromtimestamp(now).strftime("%Y-%m-%d %H:%M:%S"),
           "started_unix": now}
    data = (json.dumps(rec, indent=2, sort_keys=True) + "\n").encode("utf-8")
    try:
      os.ftruncate(fd, 0)
      os.lseek(fd, 0, os.SEEK_SET)
      os.write(fd, data)
      os.fsync(fd)
    except OSError as e:
      raise WorkdirError(f"workdir {self.workdir} is not writable: cannot write {self.path} "
                         f"({_describe(e)})") from None

  def _judge(self, rec: Any) -> None:
    """We hold the file; decide about a record a previous holder left (raise if it is live)."""
    if not isinstance(rec, dict) or not isinstance(rec.get("pid"), int):
      return  # empty or unreadable: a holder died before writing it
    if rec.get("host") != socket.gethostname():
      raise self._other_host(rec)
    if rec["pid"] == os.getpid():
      return  # left by this very process (a lock object dropped without release)
    if _holder_alive(rec):
      raise self._busy(rec)  # flock does not reach it (another filesystem view): be safe
    self._stale(rec)

  # -- acquire / release -------------------------------------------------------------------------

  def acquire(self) -> "WorkdirLock":
    if not self.enabled or self._fd is not None:
      return self
    self._prepare()
    if fcntl is None:
      self._acquire_exclusive_create()
    else:
      self._acquire_flock()
    return self

  def _acquire_flock(self) -> None:
    for _ in range(100):
      fd = self._open(os.O_RDWR | os.O_CREAT)
      try:
        try:
          fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
          if e.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            raise WorkdirError(f"cannot lock {self.path} ({_describe(e)})") from None
          raise self._busy(self._read_path()) from None
        # The holder we raced with may have removed (released) the file after we opened it:
        # then we locked a dead inode; start again on the one now at the path.
        try:
          same = os.path.samestat(os.fstat(fd), os.stat(self.path))
        except FileNotFoundError:
          same = False
        if not same:
          os.close(fd)
          continue
        self._judge(self._read_fd(fd))
        self._write_record(fd)
      except BaseException:
        with contextlib.suppress(OSError):
          os.close(fd)
        raise
      self._fd = fd
      return
    raise WorkdirError(f"cannot lock {self.path}: it keeps being replaced")

  def _acquire_exclusive_create(self) -> None:
    for _ in range(2):
      try:
        fd = self._open(os.O_RDWR | os.O_CREAT | os.O_EXCL)
      except FileExistsError:
        rec = self._read_path()
        if isinstance(rec, dict) and rec.get("host") != socket.gethostname():
          raise self._other_host(rec) from None
        if not isinstance(rec, dict) or rec.get("pid") == os.getpid() or _holder_alive(rec):
          raise self._busy(rec) from None
        self._stale(rec)
        with contextlib.suppress(FileNotFoundError):
          os.unlink(self.path)
        continue
      self._write_record(fd)
      self._fd = fd
      return
    raise self._busy(self._read_path())

  def release(self) -> None:
    if self._fd is None:
      return
    fd, self._fd = self._fd, None
    try:
      with contextlib.suppress(OSError):
        if os.path.samestat(os.fstat(fd), os.stat(self.path)):
          os.unlink(self.path)  # while still locked: nobody can be holding the new one
    finally:
      os.close(fd)  # drops the flock

  @property
  def held(self) -> bool:
    return self._fd is not None

  def __enter__(self) -> "WorkdirLock":
    return self.acquire()

  def __exit__(self, *exc) -> None:
    self.release()

  def __del__(self):  # a dropped lock object still releases
    with contextlib.suppress(Exception):
      self.release()
