"""Orbax checkpoints of a run: train state, data-iterator state, clock and config, verified.

Each checkpoint is one step directory with four items:
  state        the TrainState pytree (params, optimizer state, step), restored onto given shardings
  data         the Grain iterator state (JSON), so a resumed run sees exactly the same batches
  meta         JSON: the step, training and eval time, each trial's record, the configs
  fingerprint  JSON: what the other three items held when they were saved (see below)
Preservation keeps the latest `keep_checkpoints` plus the best `keep_best` by val loss
(LatestN OR BestN; `max_to_keep` with `best_fn` alone would keep only the N best).

Integrity. `save` hashes (sha256) the bytes of every array leaf of the host copy of the state
it hands to Orbax, keyed by key path ("params/wte/embedding"), plus the canonical JSON of `data`
and `meta`, and saves that fingerprint as a fourth item of the same Composite save, so Orbax's
atomic finalize (write to `N.orbax-checkpoint-tmp`, rename to `N`) covers it too; the
fingerprint hashes itself ("self"), so a damaged fingerprint is caught as well. Restores
(`restore_latest_good`, `restore_step`, `restore`) recompute the hashes from the restored values
and compare. A leaf that is not fully addressable (multi-host) is hashed shard by shard, keyed
by the shard's global index; the processes' shard hashes are gathered at save time, so the one
fingerprint (written by the primary host) holds all of them, and on restore each process checks
the shards it holds and all processes agree on the verdict before acting on it. A leaf restored
with another dtype, or onto a layout whose shards were not recorded, is left unverified.

Damage. `restore_latest_good` walks the steps newest first. A step that fails verification or
cannot be read (any error from Orbax, tensorstore or JSON) is reported with one line on stderr
  checkpoint 12 is damaged (state/params/wte: bytes differ from the fingerprint): falling back
  to checkpoint 6   (one line)
and, once an older good step is found, renamed to `12.damaged` (never deleted; Orbax only lists
directories named by a bare step number, so it no longer sees it). If checkpoints exist but none
is good, nothing is renamed and `CheckpointError` names the directory. A target whose shapes do
not match the checkpoint (another model config) is an error, not damage: nothing is renamed;
nor is an out-of-memory error while restoring. Only the items asked for are read and verified.
Checkpoints written before fingerprints existed restore unverified, with a one-line note.
Readers next to a running training (evaluation, export) use `manager(..., read_only=True)` and
`restore_latest_good(..., quarantine=False)`: damaged steps are skipped but left as they are.

Failed writes. Saves are asynchronous; a write error (disk full, ...) surfaces in `wait` or in
the next `save`, which raise `CheckpointError` naming the step and the cause. The half-written
`N.orbax-checkpoint-tmp` directory is never listed as a checkpoint (Orbax removes it when the
next manager is created), so the previous checkpoint stays the latest.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import hashlib
import json
import math
import os
import re
import sys
import weakref
from typing import Any, Callable, Iterable, Sequence

import jax
import numpy as np
import orbax.checkpoint as ocp
from etils import epath
from orbax.checkpoint.checkpoint_managers import preservation_policy as pp

from jaxgpt import files
from jaxgpt.keypath import path_str

ITEMS = ("state", "data", "meta", "fingerprint")
CONTENT_ITEMS = ("state", "data", "meta")  # what a restore can ask for
FINGERPRINT_VERSION = 1
DAMAGED_SUFFIX = ".damaged"
_HASH = "sha256"


class CheckpointError(Exception):
  """A checkpoint could not be written or no usable one could be restored (one-line message)."""


@dataclasses.dataclass
class Restored:
  """What a restore returned: the step used and the items asked for (None for the others)."""
  step: int
  state: Any = None
  data: dict | None = None
  meta: dict | None = None
  verified: bool = True  # False: written before fingerprints, or some leaves not checkable


class _Damaged(Exception):
  def __init__(self, where: str, reason: str):
    super().__init__(f"{where}: {reason}")
    self.where, self.reason = where, reason


# ----------------------------------------------------------------------------------------------
# Manager and saving


def manager(directory: str, *, keep_latest: int, keep_best: int, async_save: bool = True,
            read_only: bool = False) -> ocp.CheckpointManager:
  """The run's checkpoint manager. `read_only` (evaluation, export, or any reader next to a
  running training) creates nothing, deletes nothing and leaves the in-progress tmp directory of
  a concurrent save alone; pair it with `restore_latest_good(..., quarantine=False)`."""
  if read_only:
    # (Not Orbax's read_only, which warns on stderr: a manager that never saves deletes nothing.)
    options = ocp.CheckpointManagerOptions(create=False, cleanup_tmp_directories=False,
                                           enable_async_checkpointing=False)
    return ocp.CheckpointManager(os.path.abspath(directory), options=options, item_names=ITEMS)
  policies = [pp.LatestN(n=keep_latest)]
  if keep_best > 0:
    policies.append(pp.BestN(get_metric_fn=lambda m: -m["val_loss"], n=keep_best,
                             keep_checkpoints_without_metrics=False))
  options = ocp.CheckpointManagerOptions(
      preservation_policy=pp.AnyPreservationPolicy(policies),
      enable_async_checkpointing=async_save,
      cleanup_tmp_directories=True,
      create=True,
  )
  return ocp.CheckpointManager(os.path.abspath(directory), options=options, item_names=ITEMS)


# The step whose async save has not been waited for yet, per manager (errors surface later).
_PENDING: "weakref.WeakKeyDictionary[ocp.CheckpointManager, int]" = weakref.WeakKeyDictionary()


def save(mngr: ocp.CheckpointManager, step: int, state: Any, data_state: dict, meta: dict,
         val_loss: float | None) -> None:
  """Starts an (async) save; val_loss ranks it for the best-N policy (inf when unknown).

  Raises CheckpointError if this write, or the previous one still in flight, failed."""
  wait(mngr)  # a failure of the previous save is reported under its own step
  loss = float(val_loss) if val_loss is not None and math.isfinite(val_loss) else float("inf")
  # The train step donates its state buffers, and on CPU Orbax's host copy may alias them: save
  # a private copy, or the background write can capture parameters of a later step.
  state = jax.tree.map(lambda x: x.copy() if isinstance(x, jax.Array) else x, state)
  data_state, meta = _plain_json(data_state), _plain_json(meta)
  fp = fingerprint(state, data_state, meta)
  _PENDING[mngr] = step
  try:
    mngr.save(step, args=ocp.args.Composite(
        state=ocp.args.StandardSave(state),
        data=ocp.args.JsonSave(data_state),
        meta=ocp.args.JsonSave(meta),
        fingerprint=ocp.args.JsonSave(fp),
    ), metrics={"val_loss": loss}, force=True)
  except Exception as e:  # noqa: BLE001 - every failure of a write is reported the same way
    _PENDING.pop(mngr, None)
    _save_failed(mngr, step, e)


def wait(mngr: ocp.CheckpointManager) -> None:
  """Waits for the save in flight; raises CheckpointError (step and cause) if it failed."""
  step = _PENDING.pop(mngr, None)
  try:
    mngr.wait_until_finished()
  except Exception as e:  # noqa: BLE001
    _save_failed(mngr, step, e)


def close(mngr: ocp.CheckpointManager) -> None:
  """`wait`, then closes the manager."""
  wait(mngr)
  mngr.close()


def _save_failed(mngr: ocp.CheckpointManager, step: int | None, e: BaseException):
  _quiet_closed_loop_callbacks()
  directory = str(mngr.directory)
  try:
    mngr.reload()  # the failed step (and steps Orbax meant to delete) out of its cached list
    latest = mngr.latest_step()
  except Exception:  # noqa: BLE001
    latest = None
  what = "a checkpoint" if step is None else f"checkpoint {step}"
  kept = (f"the latest complete checkpoint is still {latest}" if latest is not None
          else "there is no complete checkpoint")
  raise CheckpointError(f"{what} could not be written to {directory} "
                        f"({_short(e, directory)}); {kept}") from e


# ----------------------------------------------------------------------------------------------
# Fingerprints


def _plain_json(obj: Any) -> Any:
  """`obj` as JSON gives it back (tuples -> lists, int keys -> str): what a restore returns."""
  return json.loads(json.dumps(obj))


def _json_hash(obj: Any) -> str:
  text = json.dumps(_plain_json(obj), sort_keys=True, separators=(",", ":"))
  return hashlib.new(_HASH, text.encode("utf-8")).hexdigest()


def _bytes_hash(a: np.ndarray) -> str:
  a = np.ascontiguousarray(a)
  return hashlib.new(_HASH, a.reshape(-1).view(np.uint8).data).hexdigest()


def _host_value(x: Any) -> Any:
  """PRNG key arrays as their raw data; everything else as it is."""
  if isinstance(x, jax.Array) and jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
    return jax.random.key_data(x)
  return x


def _index_key(index: Sequence[slice], shape: Sequence[int]) -> str:
  """A shard's global index as "0:64,0:128" ("()" for a scalar)."""
  if not shape:
    return "()"
  return ",".join(f"{s.start or 0}:{dim if s.stop is None else s.stop}"
                  for s, dim in zip(index, shape))


def _index_slices(key: str) -> tuple[slice, ...]:
  if key == "()":
    return ()
  return tuple(slice(int(a), int(b)) for a, b in (part.split(":") for part in key.split(",")))


def _leaves(tree: Any) -> list[tuple[str, Any]]:
  return [(path_str(p), _host_value(x)) for p, x in jax.tree_util.tree_flatten_with_path(tree)[0]]


def _is_sharded(x: Any) -> bool:
  return isinstance(x, jax.Array) and not x.is_fully_addressable


def _local_shards(x: jax.Array) -> dict[str, Any]:
  """This process's shards of `x`, one per global index (replicas dropped)."""
  out = {}
  for s in x.addressable_shards:
    out.setdefault(_index_key(s.index, x.shape), s.data)
  return out


def _hash_all(arrays: dict[Any, np.ndarray]) -> dict[Any, str]:
  """sha256 of each array, in threads (hashlib releases the GIL on large buffers)."""
  if len(arrays) <= 1 or sum(a.nbytes for a in arrays.values()) < (1 << 22):
    return {k: _bytes_hash(a) for k, a in arrays.items()}
  with concurrent.futures.ThreadPoolExecutor(min(8, os.cpu_count() or 1)) as ex:
    futures = {k: ex.submit(_bytes_hash, a) for k, a in arrays.items()}
    return {k: f.result() for k, f in futures.items()}


def _state_records(state: Any) -> dict[str, dict]:
  leaves = _leaves(state)
  full = {k: x for k, x in leaves if not _is_sharded(x)}
  host = dict(zip(full, jax.device_get(list(full.values()))))
  host = {k: np.asarray(v) for k, v in host.items()}
  shards = {(k, i): d for k, x in leaves if _is_sharded(x) for i, d in _local_shards(x).items()}
  shards = dict(zip(shards, jax.device_get(list(shards.values()))))
  hashes = _hash_all({**{(k, None): v for k, v in host.items()},
                      **{k: np.asarray(v) for k, v in shards.items()}})
  records: dict[str, dict] = {}
  for k, x in leaves:
    if _is_sharded(x):
      records[k] = {"dtype": str(np.dtype(x.dtype)), "shape": list(x.shape), "shards": {}}
    else:
      records[k] = {"dtype": str(host[k].dtype), "shape": list(host[k].shape),
                    "hash": hashes[(k, None)]}
  for (k, i), h in hashes.items():
    if i is not None:
      records[k]["shards"][i] = h
  if shards and jax.process_count() > 1:  # every process's shards into the one fingerprint
    mine = {k: r["shards"] for k, r in records.items() if "shards" in r}
    for other in _allgather_json(mine):
      for k, s in other.items():
        records[k]["shards"].update(s)
  return records


def fingerprint(state: Any, data_state: Any, meta: Any) -> dict:
  """The fingerprint `save` stores: hashes of the state's leaves and of the JSON items."""
  fp = {"version": FINGERPRINT_VERSION, "hash": _HASH, "process_count": jax.process_count(),
        "state": _state_records(state), "data": _json_hash(data_state), "meta": _json_hash(meta)}
  fp["self"] = _json_hash(fp)
  return fp


def _check_fingerprint(fp: Any) -> dict:
  if not isinstance(fp, dict) or "self" not in fp:
    raise _Damaged("fingerprint", "not a fingerprint")
  body = {k: v for k, v in fp.items() if k != "self"}
  if _json_hash(body) != fp["self"]:
    raise _Damaged("fingerprint", "its own hash does not match")
  if fp.get("version") != FINGERPRINT_VERSION or fp.get("hash") != _HASH:
    raise _Damaged("fingerprint", f"unknown version {fp.get('version')!r}")
  return fp


def _verify_state(state: Any, records: dict[str, dict]) -> int:
  """Raises _Damaged for the first leaf whose bytes differ; returns how many went unchecked."""
  leaves = _leaves(state)
  unchecked = 0
  full, shards, wanted = {}, {}, {}
  for k, x in leaves:
    rec = records.get(k)
    if rec is None or str(np.dtype(x.dtype if hasattr(x, "dtype") else np.asarray(x).dtype)) \
        != rec["dtype"] or list(np.shape(x)) != rec["shape"]:
      unchecked += 1
    elif _is_sharded(x):
      for i, d in _local_shards(x).items():
        if i in rec.get("shards", {}):
          shards[(k, i)] = d
          wanted[(k, i)] = rec["shards"][i]
        else:
          unchecked += 1
    elif "hash" in rec:
      full[k] = x
      wanted[(k, None)] = rec["hash"]
    else:  # saved shard by shard (multi-host), restored whole: check the recorded pieces
      full[k] = x
      for i, h in rec["shards"].items():
        wanted[(k, i)] = h
  host = {k: np.asarray(v) for k, v in zip(full, jax.device_get(list(full.values())))}
  got_shards = dict(zip(shards, jax.device_get(list(shards.values()))))
  arrays = {}
  for (k, i) in wanted:
    if (k, i) in got_shards:
      arrays[(k, i)] = np.asarray(got_shards[(k, i)])
    elif i is None:
      arrays[(k, i)] = host[k]
    else:
      arrays[(k, i)] = host[k][_index_slices(i)]
  got = _hash_all(arrays)
  order = {k: n for n, (k, _) in enumerate(leaves)}
  for (k, i) in sorted(wanted, key=lambda ki: (order[ki[0]], str(ki[1]))):
    if got[(k, i)] != wanted[(k, i)]:
      where = f"state/{k}" + ("" if i is None else f"[{i}]")
      raise _Damaged(where, "bytes differ from the fingerprint")
  return unchecked


# ----------------------------------------------------------------------------------------------
# Multi-process helpers (no-ops on one process)


def _allgather_json(obj: Any) -> list:
  """`obj` of every process, in process order (a collective: all processes must call it)."""
  from jax.experimental import multihost_utils
  raw = np.frombuffer(json.dumps(obj).encode("utf-8"), np.uint8)
  sizes = np.asarray(multihost_utils.process_allgather(np.array([raw.size], np.int32))).reshape(-1)
  buf = np.zeros(int(sizes.max()), np.uint8)
  buf[:raw.size] = raw
  everyone = np.asarray(multihost_utils.process_allgather(buf)).reshape(len(sizes), -1)
  return [json.loads(bytes(everyone[p, :int(n)]).decode("utf-8")) for p, n in enumerate(sizes)]


def _agree(err: tuple[str, str] | None) -> tuple[str, str] | None:
  """The first process's error, if any process had one: all processes take the same path."""
  if jax.process_count() == 1:
    return err
  for p, e in enumerate(_allgather_json(err)):
    if e is not None:
      where, reason = e
      return where, (reason if p == 0 else f"{reason} (process {p})")
  return None


def _barrier(name: str) -> None:
  if jax.process_count() > 1:
    from jax.experimental import multihost_utils
    multihost_utils.sync_global_devices(name)


def _is_primary() -> bool:
  return jax.process_index() == 0


def _say(line: str) -> None:
  if _is_primary():
    print(line, file=sys.stderr, flush=True)


# ----------------------------------------------------------------------------------------------
# Restoring


def _root_cause(e: BaseException) -> BaseException:
  """The innermost exception Orbax wrapped (it re-raises tensorstore's with less detail)."""
  seen = {id(e)}
  while True:
    nxt = e.__cause__ or (None if e.__suppress_context__ else e.__context__)
    if nxt is None or id(nxt) in seen:
      return e
    seen.add(id(nxt))
    e = nxt


def _short(e: BaseException, directory: str | None = None) -> str:
  """A one-line, bounded description of an error (its root cause)."""
  errno = re.search(r"os_error_code='?(\d+)", str(e))
  e = _root_cause(e)
  errno = errno or re.search(r"os_error_code='?(\d+)", str(e))
  if errno:  # tensorstore's I/O errors carry the errno
    n = int(errno.group(1))
    return f"OSError: [Errno {n}] {os.strerror(n)}"
  if isinstance(e, OSError) and e.errno and e.strerror:
    return f"{type(e).__name__}: [Errno {e.errno}] {e.strerror}"
  text = str(e)
  if directory:
    text = text.replace(directory.rstrip("/") + "/", "")
  text = re.sub(r"\s+", " ", text).strip()
  if len(text) > 160:
    text = text[:157] + "..."
  return f"{type(e).__name__}: {text}" if text else type(e).__name__


def _describe_state_error(e: BaseException, step_dir: str) -> tuple[str, str]:
  """(where, reason) of a failed state read: the array tensorstore names, and why, if it does."""
  text = re.sub(r"\s+", " ", str(_root_cause(e)))
  text = re.sub(r"\s*\[tensorstore_spec=.*$", "", text).replace(step_dir.rstrip("/") + "/", "")
  m = re.search(r'Error reading "([^"]+?)/[^"/]*" in OCDBT database at [^:]*"[^"]*": (.*)', text)
  if m and not re.search(r"os_error_code", text):
    reason = re.sub(r"; at (uncompressed )?byte \d+", "", m.group(2)).strip()
    reason = re.sub(r'^Error reading Byte range \[\d+, \d+\) of local file "([^"]+)": ', r"\1: ",
                    reason)
    if len(reason) > 120:
      reason = reason[:117] + "..."
    return "state/" + m.group(1).replace(".", "/"), reason
  return "state", _short(e, step_dir)


_QUIET = False


def _quiet_closed_loop_callbacks() -> None:
  """After a failed Orbax read or write, tensorstore still completes the other reads/writes of
  that call and their callbacks hit Orbax's closed event loop: one "RuntimeError: Event loop is
  closed" traceback each, via sys.unraisablehook, around our one-line report. Drop exactly those;
  everything else still reaches the previous hook."""
  global _QUIET
  if _QUIET:
    return
  _QUIET = True
  previous = sys.unraisablehook

  def hook(unraisable):
    exc = unraisable.exc_value
    if isinstance(exc, RuntimeError) and str(exc) == "Event loop is closed":
      return
    previous(unraisable)

  sys.unraisablehook = hook


def _is_out_of_memory(e: BaseException) -> bool:
  text = str(e)
  return isinstance(e, MemoryError) or "RESOURCE_EXHAUSTED" in text or "out of memory" in text


def _items(abstract_state: Any, items: Iterable[str] | None) -> tuple[str, ...]:
  if items is None:
    items = CONTENT_ITEMS if abstract_state is not None else ("data", "meta")
  items = tuple(items)
  unknown = [i for i in items if i not in CONTENT_ITEMS]
  if unknown:
    raise ValueError(f"unknown checkpoint items {unknown}: choose from {CONTENT_ITEMS}")
  if "state" in items and abstract_state is None:
    raise ValueError("restoring 'state' needs abstract_state (the target shapes and shardings)")
  return items


def _step_dir(mngr: ocp.CheckpointManager, step: int) -> str:
  return os.path.join(str(mngr.directory), str(step))


def _stage(where: str, fn: Callable[[], Any], directory: str, step: int) -> Any:
  """Runs one part of a restore; any failure is damage of `where` (agreed across processes)."""
  out, err = None, None
  try:
    out = fn()
  except _Damaged as d:
    err = (d.where, d.reason)
  except CheckpointError:
    raise
  except Exception as e:  # noqa: BLE001 - whatever Orbax, tensorstore or json raise
    _quiet_closed_loop_callbacks()
    if _is_out_of_memory(e):
      raise CheckpointError(f"checkpoint {step} in {directory} could not be restored "
                            f"({_short(e, directory)}): not enough memory; the checkpoint "
                            "was left as it is") from e
    step_dir = os.path.join(directory, str(step))
    err = (_describe_state_error(e, step_dir) if where == "state"
           else (where, _short(e, step_dir)))
  err = _agree(err)
  if err is not None:
    raise _Damaged(*err)
  return out


def _recorded_items(step_dir: str) -> list[str] | None:
  """The items Orbax recorded for the step (None if that record is unreadable)."""
  try:
    return list(files.read_json(os.path.join(step_dir, "_CHECKPOINT_METADATA"))["item_handlers"])
  except Exception:  # noqa: BLE001
    return None


def _saved_shapes(mngr: ocp.CheckpointManager, step: int,
                  fp: dict | None) -> dict[str, tuple[list, str]]:
  if fp is not None:
    return {k: (r["shape"], r["dtype"]) for k, r in fp["state"].items()}
  # Written before fingerprints: Orbax's own record of the arrays (state/_METADATA).
  handler = ocp.StandardCheckpointHandler()
  try:
    meta = handler.metadata(epath.Path(_step_dir(mngr, step)) / "state")
  finally:
    handler.close()
  tree = getattr(meta, "tree", meta)
  return {path_str(p): (list(m.shape), str(np.dtype(m.dtype)))
          for p, m in jax.tree_util.tree_flatten_with_path(tree)[0] if hasattr(m, "shape")}


def _check_compatible(saved: dict[str, tuple[list, str]], abstract_state: Any, step: int,
                      directory: str) -> None:
  """A target with other shapes is the caller's mistake (another config), not damage."""
  if not saved:
    return  # nothing recorded to compare with: let the restore decide
  target = {k: list(x.shape if hasattr(x, "shape") else np.shape(x))
            for k, x in _leaves(abstract_state)}
  problems = [f"{k}: saved {saved[k][0]}, expected {shape}" for k, shape in target.items()
              if k in saved and saved[k][0] != shape]
  problems += [f"{k}: not in the checkpoint" for k in target if k not in saved]
  problems += [f"{k}: in the checkpoint, not in the model" for k in saved if k not in target]
  if problems:
    more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
    raise CheckpointError(f"checkpoint {step} in {directory} does not fit this model "
                          f"({problems[0]}{more}): was the model config changed? pass another "
                          "--workdir to start afresh")


_NOTED: set[tuple[str, int]] = set()  # unverified steps already noted (one line per step)


def _load(mngr: ocp.CheckpointManager, step: int, abstract_state: Any,
          items: tuple[str, ...]) -> Restored:
  directory = str(mngr.directory)
  step_dir = _step_dir(mngr, step)
  restore_item = lambda name, arg: mngr.restore(step, args=ocp.args.Composite(**{name: arg}))[name]

  def read_fingerprint():
    if not os.path.isdir(os.path.join(step_dir, "fingerprint")):
      recorded = _recorded_items(step_dir)
      if recorded is not None and "fingerprint" in recorded:
        raise _Damaged("fingerprint", "missing")
      return None
    return _check_fingerprint(restore_item("fingerprint", ocp.args.JsonRestore()))

  fp = _stage("fingerprint", read_fingerprint, directory, step)
  out = Restored(step=step, verified=fp is not None)
  for name in ("meta", "data"):
    if name in items:
      def read_json(name=name):
        value = restore_item(name, ocp.args.JsonRestore())
        if fp is not None and _json_hash(value) != fp[name]:
          raise _Damaged(name, "content differs from the fingerprint")
        return value
      setattr(out, name, _stage(name, read_json, directory, step))
  unchecked = 0
  if "state" in items:
    saved = _stage("state", lambda: _saved_shapes(mngr, step, fp), directory, step)
    _check_compatible(saved, abstract_state, step, directory)
    out.state = _stage("state", lambda: restore_item("state",
                                                     ocp.args.StandardRestore(abstract_state)),
                       directory, step)
    if fp is not None:
      unchecked = _stage("state", lambda: _verify_state(out.state, fp["state"]), directory, step)
  if fp is None and (directory, step) not in _NOTED:
    _NOTED.add((directory, step))
    _say(f"checkpoint {step} has no fingerprint (written before integrity checks): "
         "restored without verification")
  elif unchecked:
    out.verified = False
    _say(f"checkpoint {step}: {unchecked} array(s) restored with another dtype or layout "
         "could not be verified")
  return out


def _quarantine(mngr: ocp.CheckpointManager, steps: Sequence[int]) -> None:
  """Renames damaged step directories to N.damaged (kept, but no longer listed by Orbax)."""
  if not steps:
    return
  if _is_primary():
    for step in steps:
      src = _step_dir(mngr, step)
      dst, n = src + DAMAGED_SUFFIX, 1
      while os.path.exists(dst):
        n += 1
        dst = f"{src}{DAMAGED_SUFFIX}.{n}"
      os.replace(src, dst)
  _barrier("jaxgpt_checkpoint_quarantine")
  mngr.reload()


def restore_step(mngr: ocp.CheckpointManager, step: int, abstract_state: Any = None, *,
                 items: Iterable[str] | None = None) -> Restored:
  """Restores and verifies `step` only; CheckpointError if it is damaged (nothing renamed)."""
  try:
    return _load(mngr, step, abstract_state, _items(abstract_state, items))
  except _Damaged as d:
    raise CheckpointError(f"checkpoint {step} in {mngr.directory} is damaged "
                          f"({d.where}: {d.reason})") from None


def restore_latest_good(mngr: ocp.CheckpointManager, abstract_state: Any = None, *,
                        items: Iterable[str] | None = None, directory: str | None = None,
                        quarantine: bool = True) -> Restored | None:
  """The newest checkpoint that reads back and verifies, with the `items` asked for (default:
  state, data and meta; data and meta without `abstract_state`). None if there is none at all.

  Damaged steps are reported on stderr, one line each, and (with `quarantine`, for the process
  that owns the workdir) renamed to `N.damaged` once a good one is found; CheckpointError
  (naming the directory) if every step is damaged. `directory` is only used in messages
  (default: the manager's)."""
  items = _items(abstract_state, items)
  directory = str(directory or mngr.directory)
  steps = sorted(mngr.all_steps(), reverse=True)
  damaged: list[int] = []
  first: str | None = None
  for n, step in enumerate(steps):
    try:
      out = _load(mngr, step, abstract_state, items)
    except _Damaged as d:
      older = (f"falling back to checkpoint {steps[n + 1]}" if n + 1 < len(steps)
               else "no older checkpoint")
      _say(f"checkpoint {step} is damaged ({d.where}: {d.reason}): {older}")
      damaged.append(step)
      first = first or f"checkpoint {step}: {d.where}: {d.reason}"
      continue
    if quarantine:
      _quarantine(mngr, damaged)
    return out
  if steps:
    raise CheckpointError(f"no usable checkpoint in {directory}: all {len(steps)} are damaged "
                          f"({first}); move the directory away to start afresh")
  return None


def restore(mngr: ocp.CheckpointManager, abstract_state: Any, step: int | None = None
            ) -> tuple[Any, dict, dict]:
  """Restores and verifies (state, data_state, meta) at `step` (default latest) onto abstract
  shardings; CheckpointError if it is damaged. Resuming should use `restore_latest_good`."""
  step = mngr.latest_step() if step is None else step
  if step is None:
    raise CheckpointError(f"no checkpoint in {mngr.directory}")
  out = restore_step(mngr, step, abstract_state, items=CONTENT_ITEMS)
  return out.state, out.data, out.meta
