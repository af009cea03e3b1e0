"""Optuna plumbing: storage with heartbeats, samplers and pruners, and claiming trials safely.

Storage is SQLite in the sweep directory by default; any SQLAlchemy URL (PostgreSQL, MySQL)
lets workers on many machines share one study. Running trials record a heartbeat; a trial whose
worker died is failed by `optuna.storages.fail_stale_trials` once its heartbeat is older than
the grace period, and `RetryFailedTrialCallback` re-queues it at most `max_retry` times.

Claiming. Optuna pops a WAITING trial by reading its state and then updating it; on a server
database the read is `SELECT ... FOR UPDATE`, but SQLite ignores FOR UPDATE and its Python
driver reads outside a transaction, so two processes can both pop the same trial. Every claim
(and every enqueue of a grid, and the creation of the tables and the study) therefore runs
under an exclusive file lock beside the SQLite file (`study.db.lock`); server databases rely on
their row locks. A claimed trial records a heartbeat before it turns RUNNING, so a worker killed
at any point leaves trials that go stale. Grid points are enqueued once per study (a study
attribute marks the queue complete; enqueueing skips points already present, so a worker
killed half-way through enqueueing is repaired by the next). SQLite runs in WAL mode with
synchronous=NORMAL, so commits do not wait on fsync (which dominated small studies' time).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import threading
import warnings
from typing import Any, Iterator, Sequence

import optuna
from optuna.trial import TrialState

from jaxgpt.sweep import spec as spec_lib

QUEUE_READY = "queue_ready"


def storage_url(workdir: str, url: str | None = None) -> str:
  return url or "sqlite:///" + os.path.abspath(spec_lib.workdir_paths(workdir)["db"])


def sqlite_path(url: str) -> str | None:
  return url[len("sqlite:///"):] if url.startswith("sqlite:///") else None


def open_storage(url: str, sweep=None) -> optuna.storages.RDBStorage:
  """RDB storage; with a sweep config, heartbeats and the failed-trial retry callback."""
  kwargs: dict[str, Any] = {}
  if sqlite_path(url):
    os.makedirs(os.path.dirname(sqlite_path(url)) or ".", exist_ok=True)
    kwargs["engine_kwargs"] = {"connect_args": {"timeout": 120}}
  if sweep is not None:
    kwargs.update(heartbeat_interval=int(sweep.heartbeat_s), grace_period=int(sweep.grace_s),
                  heartbeat_stale_trial_callback=retry_callback(int(sweep.max_retry)))
  with warnings.catch_warnings(), claim_lock(url):  # one process creates the tables
    warnings.simplefilter("ignore")  # heartbeat_interval is marked experimental
    storage = optuna.storages.RDBStorage(url, **kwargs)
    if sqlite_path(url):
      _sqlite_wal(storage.engine)
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


@contextlib.contextmanager
def claim_lock(url: str) -> Iterator[None]:
  """Exclusive across processes for a SQLite study; a no-op for server databases."""
  path = sqlite_path(url)
  if path is None:
    yield
    return
  with open(path + ".lock", "a") as f:
    fcntl.flock(f, fcntl.LOCK_EX)
    try:
      yield
    finally:
      fcntl.flock(f, fcntl.LOCK_UN)


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
  with claim_lock(url):
    return optuna.create_study(study_name=name, storage=storage, sampler=sampler,
                               pruner=pruner, direction="minimize", load_if_exists=True)


# ------------------------------------------------------------------------------------------
# Queue and claims.

def point_key(params: dict, seed: int) -> str:
  return json.dumps([sorted(params.items()), int(seed)])


def trial_point_key(t: optuna.trial.FrozenTrial) -> str:
  params = t.system_attrs.get("fixed_params", t.params)
  return point_key(dict(params), t.user_attrs.get("seed", 0))


def enqueue_once(study: optuna.Study, url: str, points: Sequence[dict], seeds: Sequence[int],
                 extra_attrs: dict | None = None) -> int:
  """Enqueues every (point, seed) not yet in the study, once; returns how many were added."""
  if study.user_attrs.get(QUEUE_READY):
    return 0
  added = 0
  with claim_lock(url):
    if study.user_attrs.get(QUEUE_READY):
      return 0
    present = {trial_point_key(t) for t in study.get_trials(deepcopy=False)}
    for p in points:
      for s in seeds:
        if point_key(p, s) not in present:
          study.enqueue_trial(p, user_attrs={"seed": int(s)})
          added += 1
    for k, v in (extra_attrs or {}).items():
      study.set_user_attr(k, v)
    study.set_user_attr(QUEUE_READY, True)
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


def fail_stale(study: optuna.Study) -> None:
  with warnings.catch_warnings():
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
