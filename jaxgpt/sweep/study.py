"""Optuna plumbing: storage with heartbeats, samplers and pruners, and claiming trials safely.

Storage is SQLite in the sweep directory by default; a PostgreSQL URL (`postgresql://user@host/db`,
driver: `pip install 'jaxgpt[postgres]'`; plain `postgresql://` means the psycopg 3 driver) lets
workers on many machines share one study (any other SQLAlchemy URL works as far as Optuna
supports it, without the claim lock below). Running trials record a heartbeat; a trial whose
worker died is failed by `optuna.storages.fail_stale_trials` once its heartbeat is older than
the grace period, and `RetryFailedTrialCallback` re-queues it at most `max_retry` times.

Claiming. Optuna pops a WAITING trial by reading its state and then updating it; on a server
database the read is `SELECT ... FOR UPDATE`, but SQLite ignores FOR UPDATE and its Python
driver reads outside a transaction, so two processes can both pop the same trial. Row locks do
not cover the rest: a budget check before a fresh sample, the enqueueing of a grid (two workers
reaching stage 2 together would both enqueue it), failing a stale trial (two workers would both
re-queue it on SQLite). Every claim, enqueue, stale-trial sweep, the creation of a study (and of
stage 2 with its grid) and the creation of the tables therefore runs under `claim_lock`: an
exclusive file lock beside the SQLite file (`study.db.lock`, all workers on one host), or on
PostgreSQL a transaction-scoped advisory lock (`pg_advisory_xact_lock`) keyed by the study name,
held on a connection of its own; the server releases it when that transaction ends or the
worker's connection drops (a killed worker never leaves it held). The lock is re-entrant within
a thread. A claimed trial records a heartbeat before it turns RUNNING, so a worker killed at any
point leaves trials that go stale. Grid points are enqueued once per study (a study attribute
marks the queue complete; enqueueing skips points already present, so a worker killed half-way
through enqueueing is repaired by the next). SQLite runs in WAL mode with synchronous=NORMAL,
so commits do not wait on fsync (which dominated small studies' time).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import threading
import warnings
from typing import Any, Iterator, Sequence

import optuna
from optuna.trial import TrialState

from jaxgpt import files
from jaxgpt.sweep import spec as spec_lib

QUEUE_READY = "queue_ready"
POSTGRES_INSTALL = "pip install 'jaxgpt[postgres]'"


class StorageError(ValueError):
  """A storage URL that cannot be used: bad URL, missing driver, unreachable server."""


def storage_url(workdir: str, url: str | None = None) -> str:
  return normalize_url(url) if url else "sqlite:///" + os.path.abspath(
      spec_lib.workdir_paths(workdir)["db"])


def normalize_url(url: str) -> str:
  """`postgresql://` and `postgres://` mean the psycopg 3 driver (`postgresql+psycopg://`);
  SQLAlchemy's own default for them is psycopg2. Other URLs are returned as they are."""
  for prefix in ("postgresql://", "postgres://"):
    if url.startswith(prefix):
      return "postgresql+psycopg://" + url[len(prefix):]
  return url


def sqlite_path(url: str) -> str | None:
  return url[len("sqlite:///"):] if url.startswith("sqlite:///") else None


def is_postgres(url: str) -> bool:
  return url.startswith(("postgresql", "postgres:"))


def redacted(url: str) -> str:
  """The URL with its password masked, for messages."""
  try:
    import sqlalchemy
    return sqlalchemy.engine.make_url(url).render_as_string(hide_password=True)
  except Exception:  # noqa: BLE001 - an unparsable URL has no password to find
    return url


def _check_driver(url: str) -> None:
  """A StorageError naming the install command when the URL's database driver is missing."""
  import sqlalchemy
  try:
    parsed = sqlalchemy.engine.make_url(url)
  except sqlalchemy.exc.ArgumentError as e:
    raise StorageError(f"invalid storage URL {url!r}: {e}") from None
  if parsed.get_backend_name() != "postgresql" or parsed.get_driver_name() != "psycopg":
    return  # other drivers: open_storage turns their ImportError into a StorageError
  try:
    import psycopg  # noqa: F401
  except ImportError as e:
    raise StorageError(
        f"storage {redacted(url)} needs the PostgreSQL driver psycopg, which is not installed "
        f"({e}); install it with: {POSTGRES_INSTALL}") from None


def open_storage(url: str, sweep=None) -> optuna.storages.RDBStorage:
  """RDB storage; with a sweep config, heartbeats and the failed-trial retry callback.

  Raises StorageError (a ValueError) for a bad URL, a missing driver or a server that does not
  answer."""
  import sqlalchemy
  url = normalize_url(url)
  _check_driver(url)
  kwargs: dict[str, Any] = {}
  if sqlite_path(url):
    os.makedirs(os.path.dirname(sqlite_path(url)) or ".", exist_ok=True)
    kwargs["engine_kwargs"] = {"connect_args": {"timeout": 120}}
  else:  # a connection idle through a long cohort may have been dropped on the way
    kwargs["engine_kwargs"] = {"pool_pre_ping": True}
  if sweep is not None:
    kwargs.update(heartbeat_interval=int(sweep.heartbeat_s), grace_period=int(sweep.grace_s),
                  heartbeat_stale_trial_callback=retry_callback(int(sweep.max_retry)))
  try:
    with warnings.catch_warnings(), claim_lock(url):  # one process creates the tables
      warnings.simplefilter("ignore")  # heartbeat_interval is marked experimental
      storage = optuna.storages.RDBStorage(url, **kwargs)
      if sqlite_path(url):
        _sqlite_wal(storage.engine)
  except ImportError as e:  # a driver _check_driver does not know
    hint = f"; for PostgreSQL: {POSTGRES_INSTALL}" if is_postgres(url) else ""
    raise StorageError(f"storage {redacted(url)}: cannot import its database driver "
                       f"({e.__cause__ or e}){hint}") from None
  except sqlalchemy.exc.OperationalError as e:
    first = str(getattr(e, "orig", None) or e).strip().splitlines()[0]
    raise StorageError(f"cannot open storage {redacted(url)}: {first}") from None
  return storage


def _sqlite_wal(engine) -> None:
  """WAL journal, synchronous=NORMAL: readers never block the writer and a commit does not
  fsync (a killed process loses nothing; only an OS crash may drop the last commits). All
  workers of a SQLite study must share one host, which the claim lock assumes anyway."""
  import sqlalchemy

  def on_connect(dbapi_connection, _):
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()

  sqlalchemy.event.listen(engine, "connect", on_connect)
  engine.dispose()  # connections opened before the listener reconnect with it


def retry_callback(max_retry: int):
  """Optuna's callback that re-queues a failed trial (renamed in Optuna 4.9)."""
  cls = getattr(optuna.storages, "RetryHeartbeatStaleTrialCallback", None)
  cls = cls or optuna.storages.RetryFailedTrialCallback
  return cls(max_retry=max_retry)


# ------------------------------------------------------------------------------------------
# The claim lock.

_held = threading.local()  # the locks this thread holds: claim_lock is re-entrant
_lock_engines: dict[str, Any] = {}
_lock_engines_guard = threading.Lock()
TABLES_LOCK = "(tables)"  # the name of the lock taken while creating the tables


@contextlib.contextmanager
def claim_lock(url: str, name: str = TABLES_LOCK) -> Iterator[None]:
  """Exclusive across processes (and threads) for the study `name` of the storage `url`.

  SQLite: a file lock beside the database file, one for all its studies (and one host).
  PostgreSQL: `pg_advisory_xact_lock` keyed by the study name, on a connection of its own, so
  workers on any number of machines exclude each other; the server drops the lock when the
  transaction ends or the connection does. Other databases: no lock (their row locks only).
  Re-entrant: a thread already holding the lock passes straight through."""
  url = normalize_url(url)
  path = sqlite_path(url)
  token = ("sqlite", os.path.abspath(path)) if path else (url, name)
  held = _held.__dict__.setdefault("tokens", set())
  if token in held:
    yield
    return
  if path is not None:
    lock = files.file_lock(path + ".lock")
  elif is_postgres(url):
    lock = _advisory_lock(url, name)
  else:
    lock = contextlib.nullcontext()
  with lock:
    held.add(token)
    try:
      yield
    finally:
      held.discard(token)


def advisory_key(name: str) -> int:
  """The signed 64-bit key of a study's advisory lock."""
  digest = hashlib.blake2b(f"jaxgpt.sweep:{name}".encode(), digest_size=8).digest()
  return int.from_bytes(digest, "big", signed=True)


def _lock_engine(url: str):
  import sqlalchemy
  with _lock_engines_guard:
    engine = _lock_engines.get(url)
    if engine is None:
      engine = sqlalchemy.create_engine(url, pool_size=1, max_overflow=8, pool_pre_ping=True)

      @sqlalchemy.event.listens_for(engine, "connect")
      def _keepalive(dbapi_connection, _):
        # The server notices a vanished client (a machine that lost power while holding the
        # lock) within about a minute instead of the OS default of hours.
        with dbapi_connection.cursor() as cursor:
          for setting, value in (("tcp_keepalives_idle", 30), ("tcp_keepalives_interval", 10),
                                 ("tcp_keepalives_count", 3)):
            cursor.execute(f"SET {setting} = {value}")
        dbapi_connection.commit()

      _lock_engines[url] = engine
  return engine


@contextlib.contextmanager
def _advisory_lock(url: str, name: str) -> Iterator[None]:
  import sqlalchemy
  with _lock_engine(url).connect() as conn:
    conn.execute(sqlalchemy.text("SELECT pg_advisory_xact_lock(:key)"),
                 {"key": advisory_key(name)})
    try:
      yield
    finally:
      conn.rollback()  # ends the transaction, which releases the lock


def make_sampler(sweep, dims, grid_mode: bool) -> optuna.samplers.BaseSampler:
  seed = int(sweep.sampler_seed)
  # A grid is the queue of its points (enqueue_once + pop_waiting) and never samples. Optuna's
  # GridSampler is not used: it can hand one point to two workers, and with enqueued trials its
  # after_trial reads a `grid_id` they lack (KeyError on the last point).
  if grid_mode or sweep.sampler == "random":
    return optuna.samplers.RandomSampler(seed=seed)
  # Asked for K trials at once, TPE treats the running ones as bad (constant liar).
  return optuna.samplers.TPESampler(seed=seed, constant_liar=True,
                                    n_startup_trials=max(4, int(sweep.cohort_size)))


def make_pruner(sweep) -> optuna.pruners.BasePruner:
  p = sweep.pruner
  if p.name == "none":
    return optuna.pruners.NopPruner()
  if p.name == "median":
    return optuna.pruners.MedianPruner(n_startup_trials=p.startup_trials,
                                       n_warmup_steps=p.warmup_steps)
  if p.name == "percentile":
    return optuna.pruners.PercentilePruner(p.percentile, n_startup_trials=p.startup_trials,
                                           n_warmup_steps=p.warmup_steps)
  if p.name == "successive_halving":
    return optuna.pruners.SuccessiveHalvingPruner(min_resource=p.min_resource,
                                                  reduction_factor=p.reduction_factor)
  return optuna.pruners.HyperbandPruner(min_resource=p.min_resource,
                                        reduction_factor=p.reduction_factor)


def load_or_create(name: str, storage, url: str, sampler=None, pruner=None) -> optuna.Study:
  with claim_lock(url, name):
    return optuna.create_study(study_name=name, storage=storage, sampler=sampler,
                               pruner=pruner, direction="minimize", load_if_exists=True)


# ------------------------------------------------------------------------------------------
# Queue and claims.

def point_key(params: dict, seed: int) -> str:
  return json.dumps([sorted(params.items()), int(seed)])


def trial_point_key(t: optuna.trial.FrozenTrial) -> str:
  params = t.system_attrs.get("fixed_params", t.params)
  return point_key(dict(params), t.user_attrs.get("seed", 0))


def queue_key(points: Sequence[dict], seeds: Sequence[int],
              point_seeds: Sequence[Sequence[int]] | None = None) -> str:
  """A digest of the queue (points x seeds): a study marked with it is fully enqueued."""
  body = [[point_key(p, 0) for p in points], [int(s) for s in seeds]]
  if point_seeds is not None:
    body.append([[int(s) for s in ss] for ss in point_seeds])
  return hashlib.sha1(json.dumps(body).encode()).hexdigest()


def enqueue_once(study: optuna.Study, url: str, points: Sequence[dict], seeds: Sequence[int],
                 extra_attrs: dict | None = None,
                 point_seeds: Sequence[Sequence[int]] | None = None) -> int:
  """Enqueues every (point, seed) not yet in the study, once; returns how many were added.
  `point_seeds[i]`, when given, are point i's seeds instead of `seeds`.

  The study is marked with the queue's digest; a sweep resumed with more seeds (or points) has
  another digest, so only its new (point, seed) pairs are added: finished trials are kept."""
  key = queue_key(points, seeds, point_seeds)
  if study.user_attrs.get(QUEUE_READY) == key:
    return 0
  added = 0
  with claim_lock(url, study.study_name):
    if study.user_attrs.get(QUEUE_READY) == key:
      return 0
    present = {trial_point_key(t) for t in study.get_trials(deepcopy=False)}
    for i, p in enumerate(points):
      for s in (seeds if point_seeds is None else point_seeds[i]):
        if point_key(p, s) not in present:
          study.enqueue_trial(p, user_attrs={"seed": int(s)})
          added += 1
    for k, v in (extra_attrs or {}).items():
      study.set_user_attr(k, v)
    study.set_user_attr(QUEUE_READY, key)
  return added


def pop_waiting(study: optuna.Study) -> optuna.Trial | None:
  """Moves one WAITING trial to RUNNING and returns it (what `Study.ask` does first)."""
  storage = study._storage
  for t in study.get_trials(deepcopy=False, states=(TrialState.WAITING,)):
    try:
      # Beat first: a worker killed right after the claim must leave a trial that goes stale
      # (fail_stale_trials only sees trials with a heartbeat record).
      storage.record_heartbeat(t._trial_id)
      if storage.set_trial_state_values(t._trial_id, state=TrialState.RUNNING):
        return optuna.Trial(study, t._trial_id)
    except optuna.exceptions.UpdateFinishedTrialError:
      continue
  return None


def root_number(t: optuna.trial.FrozenTrial) -> int:
  """The first trial of a retry chain (RetryFailedTrialCallback records it)."""
  return t.system_attrs.get("failed_trial", t.number)


def num_roots(study: optuna.Study) -> int:
  return len({root_number(t) for t in study.get_trials(deepcopy=False)})


def counts(study: optuna.Study) -> dict[str, int]:
  """Trials done / running / waiting / pruned / failed (a retried failure counts once)."""
  trials = study.get_trials(deepcopy=False)
  c = {"done": 0, "running": 0, "waiting": 0, "pruned": 0, "failed": 0}
  for t in trials:
    c[{TrialState.COMPLETE: "done", TrialState.RUNNING: "running", TrialState.WAITING: "waiting",
       TrialState.PRUNED: "pruned", TrialState.FAIL: "failed"}[t.state]] += 1
  return c


def fail_stale(study: optuna.Study, url: str | None = None) -> None:
  """Fails the trials whose heartbeat is stale and re-queues them (under the claim lock when
  `url` is given: on SQLite two workers could otherwise both fail, and re-queue, one trial)."""
  lock = claim_lock(url, study.study_name) if url else contextlib.nullcontext()
  with lock, warnings.catch_warnings():
    warnings.simplefilter("ignore")
    optuna.storages.fail_stale_trials(study)


class Heartbeat:
  """Records a heartbeat for each given trial every `interval` seconds, in a thread."""

  def __init__(self, storage, trial_ids: Sequence[int], interval: float):
    self._storage, self._ids, self._interval = storage, list(trial_ids), interval
    self._stop = threading.Event()
    self._thread = threading.Thread(target=self._run, daemon=True)

  def _beat(self):
    for tid in self._ids:
      try:
        self._storage.record_heartbeat(tid)
      except Exception:  # noqa: BLE001 - a missed beat is retried next interval
        pass

  def _run(self):
    while not self._stop.wait(self._interval):
      self._beat()

  def __enter__(self):
    self._beat()
    self._thread.start()
    return self

  def __exit__(self, *exc):
    self._stop.set()
    self._thread.join()
