"""A throwaway PostgreSQL server for tests: its own data directory, loopback only, a free port.

`PgServer.start()` runs the Debian package's `initdb` and `pg_ctl` (found under
/usr/lib/postgresql/*/bin, on PATH, or in $JAXGPT_PG_BIN) into a fresh temporary directory,
listening on 127.0.0.1 only (and a Unix socket inside that directory), with trust
authentication for loopback connections and durability off (fsync, synchronous_commit: the
data is thrown away). As root the server runs as the `postgres` user (PostgreSQL refuses to run
as root). `create_database()` returns a SQLAlchemy URL; `stop()` stops the server and deletes
the directory. `unavailable()` says why no server can be started here (None when one can).
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time

SUPERUSER = "postgres"


def bin_dir() -> str | None:
  """The directory with initdb and pg_ctl: $JAXGPT_PG_BIN, the newest Debian version, PATH."""
  candidates = [os.environ.get("JAXGPT_PG_BIN", "")]
  candidates += sorted(glob.glob("/usr/lib/postgresql/*/bin"),
                       key=lambda d: [int(x) for x in d.split("/")[-2].split(".")
                                      if x.isdigit()], reverse=True)
  on_path = shutil.which("initdb")
  candidates.append(os.path.dirname(on_path) if on_path else "")
  for d in candidates:
    if d and all(os.access(os.path.join(d, b), os.X_OK) for b in ("initdb", "pg_ctl")):
      return d
  return None


def _run_as() -> list[str]:
  """The command prefix that runs the server's binaries as a non-root user."""
  if os.geteuid() != 0:
    return []
  runuser = shutil.which("runuser")
  if runuser:
    return [runuser, "-u", SUPERUSER, "--"]
  return [shutil.which("su") or "su", SUPERUSER, "-s", "/bin/sh", "-c", '"$0" "$@"']


def unavailable() -> str | None:
  """Why no test server can be started here, or None."""
  try:
    import psycopg  # noqa: F401
  except ImportError as e:
    return f"psycopg is not installed ({e}): pip install -e '.[postgres]'"
  if bin_dir() is None:
    return ("no PostgreSQL server binaries (initdb, pg_ctl) under /usr/lib/postgresql/*/bin "
            "or on PATH: apt-get install postgresql")
  if os.geteuid() == 0:
    try:
      pwd.getpwnam(SUPERUSER)
    except KeyError:
      return f"running as root and there is no {SUPERUSER!r} user to run the server as"
  return None


def _free_port() -> int:
  with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


class PgServer:

  def __init__(self):
    self.bin = bin_dir()
    self.root = self.data = None
    self.port = None

  def _pg(self, name: str, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    cmd = _run_as() + [os.path.join(self.bin, name), *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd="/")

  def start(self, attempts: int = 3) -> "PgServer":
    reason = unavailable()
    if reason:
      raise RuntimeError(reason)
    self.root = tempfile.mkdtemp(prefix="jaxgpt-pg-")  # short: a socket path is <= 107 bytes
    self.data = os.path.join(self.root, "data")
    if os.geteuid() == 0:
      pw = pwd.getpwnam(SUPERUSER)
      os.chown(self.root, pw.pw_uid, pw.pw_gid)
    r = self._pg("initdb", "-D", self.data, "-U", SUPERUSER, "--auth=trust", "--no-sync",
                 "-E", "UTF8", "--locale=C")
    if r.returncode:
      raise RuntimeError(f"initdb failed:\n{r.stdout}\n{r.stderr}")
    with open(os.path.join(self.data, "pg_hba.conf"), "w", encoding="utf-8") as f:
      f.write("local all all trust\nhost all all 127.0.0.1/32 trust\n")  # loopback only
    for attempt in range(attempts):
      self.port = _free_port()
      with open(os.path.join(self.data, "postgresql.auto.conf"), "w", encoding="utf-8") as f:
        f.write(f"listen_addresses = '127.0.0.1'\nport = {self.port}\n"
                f"unix_socket_directories = '{self.root}'\n"
                "fsync = off\nsynchronous_commit = off\nfull_page_writes = off\n"
                "max_connections = 200\n")
      r = self._pg("pg_ctl", "-D", self.data, "-l", os.path.join(self.root, "server.log"),
                   "-w", "-t", "60", "start", timeout=90)
      if r.returncode == 0:
        return self
      if attempt == attempts - 1:  # the port may have been taken in between: try another
        log = ""
        with open(os.path.join(self.root, "server.log"), encoding="utf-8",
                  errors="replace") as f:
          log = f.read()[-3000:]
        self.stop()
        raise RuntimeError(f"pg_ctl start failed:\n{r.stdout}\n{r.stderr}\n{log}")
    raise AssertionError("unreachable")

  def url(self, dbname: str = "postgres") -> str:
    return f"postgresql://{SUPERUSER}@127.0.0.1:{self.port}/{dbname}"

  def create_database(self, name: str) -> str:
    """Creates database `name`; returns its URL (`postgresql://`, i.e. the psycopg driver)."""
    import psycopg
    deadline = time.time() + 30
    while True:
      try:
        with psycopg.connect(host="127.0.0.1", port=self.port, user=SUPERUSER,
                             dbname="postgres", autocommit=True, connect_timeout=10) as conn:
          conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)
      except psycopg.OperationalError:
        if time.time() > deadline:
          raise
        time.sleep(0.2)

  def stop(self) -> None:
    if self.data and os.path.exists(os.path.join(self.data, "postmaster.pid")):
      self._pg("pg_ctl", "-D", self.data, "-m", "immediate", "-w", "stop")
    if self.root:
      shutil.rmtree(self.root, ignore_errors=True)
    self.root = self.data = None
