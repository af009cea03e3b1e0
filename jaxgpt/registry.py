"""Name -> implementation tables for everything a config selects by name.

Each model family, optimizer, LR schedule, orthogonalizer and data source registers itself once,
in its own module, with the config check and the builder it brings:

    registry.MODELS.register("gpt", registry.ModelFamily(build=build, check=check, ...))

`jaxgpt.config.validate` reads the allowed names from these tables (so adding a family is one
`register` call, never an edit of a list somewhere else), and the trainer builds through them.
`RUN_HOOKS` holds the code the run driver calls at the start and end of every run (the optimizer
partition printout, the export at the end), registered by the modules that own it.
This module imports nothing of jaxgpt but `errors`, so any module may register here.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Generic, Iterator, TypeVar

from jaxgpt.errors import ConfigError

E = TypeVar("E")
Check = Callable[[Any], None]  # (the whole config) -> None; raises ConfigError naming the key


def _no_check(config: Any) -> None:
  del config


class Registry(Generic[E]):
  """Entries by name for the config key `key` (e.g. "model.name")."""

  def __init__(self, key: str):
    self.key = key
    self._entries: dict[str, E] = {}

  def register(self, name: str, entry: E) -> E:
    if name in self._entries:
      raise ValueError(f"{self.key}={name!r} is registered twice")
    self._entries[name] = entry
    return entry

  def unregister(self, name: str) -> None:
    """Removes `name` (tests that register a toy entry clean up with this)."""
    self._entries.pop(name, None)

  def names(self) -> tuple[str, ...]:
    return tuple(self._entries)

  def get(self, name: str) -> E:
    """The entry of `name`; an unknown name is a ConfigError listing the registered ones."""
    if name not in self._entries:
      raise ConfigError(f"{self.key}={name!r} is not allowed; choose one of {self.names()}")
    return self._entries[name]

  def __contains__(self, name: object) -> bool:
    return name in self._entries

  def __iter__(self) -> Iterator[str]:
    return iter(self._entries)


@dataclasses.dataclass(frozen=True)
class ModelFamily:
  """A model family (`model.name`).

  build(config.model, vocab_size) -> flax Module whose apply gives float32 logits [B, T, V].
  check(config): every key the family reads, checked before anything is built.
  flops_per_token(config.model, vocab_size, seq_len): training FLOPs per token (MFU).
  projection: params -> params back on the family's constraint set (nGPT's sphere), applied by
    the optimizer chain every `optimizer.lazy_proj_freq` steps; None if there is none.
  collections: Flax collections the model writes in a training apply (`jaxgpt.models.aux`:
    "losses" terms are added to the loss, "metrics" are logged); () = none, the plain step.
  traced_keys: `model.*` keys that may differ between the trials of one vmapped cohort.
  set_traced(params, values) -> params: writes those keys' per-trial values into freshly
    initialised parameters (e.g. gated nGPT's initial alpha); `values` maps key -> scalar.
  rng_streams: Flax rng names a training apply draws from (an MoE's router noise); the train
    step derives each from (train.seed, step, micro-batch), so runs and resumes repeat exactly.
    Evaluation and sampling pass none: the model must then run deterministically.
  """
  build: Callable[[Any, int | None], Any]
  flops_per_token: Callable[[Any, int | None, int], float]
  check: Check = _no_check
  projection: Callable[[Any], Any] | None = None
  collections: tuple[str, ...] = ()
  traced_keys: tuple[str, ...] = ()
  set_traced: Callable[[Any, dict], Any] | None = None
  rng_streams: tuple[str, ...] = ()


@dataclasses.dataclass(frozen=True)
class Optimizer:
  """An optimizer (`optimizer.name`).

  build(config.optimizer) -> optax GradientTransformation (the base learning rates; the chain
    around it, clipping and the schedule, is `jaxgpt.optim.build_optimizer`'s).
  host_update: optional periodic host-side callback, called by the training loop after every
    periodic evaluation as host_update(config.optimizer, state, step, evals) -> state, where
    `evals` holds one dict of validation metrics per trial (one for a single run); it may
    return a state with a new optimizer state (a learned optimizer's meta-update).
  describe: optional describe(config.optimizer, params, fold) -> str, a table of which leaf
    gets which update rule (`fold`: repeated layers folded into one row); the run driver
    prints it at the start of a single run and writes it in full to `partition.txt`.
  """
  build: Callable[[Any], Any]
  check: Check = _no_check
  host_update: Callable[[Any, Any, int, list], Any] | None = None
  describe: Callable[[Any, Any, bool], str] | None = None


@dataclasses.dataclass(frozen=True)
class Schedule:
  """An LR schedule (`optimizer.schedule`): build(config.optimizer) -> progress -> multiplier."""
  build: Callable[[Any], Callable]
  check: Check = _no_check


@dataclasses.dataclass(frozen=True)
class Orthogonalizer:
  """An odd-polynomial orthogonalizer (`optimizer.orthogonalize`), see `optim.orthogonalize`.

  coefficients(steps, pe_lower) -> ((a, b, c), ...) one row per iteration;
  normalization: (scale, eps) of X_0 = G / (scale * ||G||_F + eps).
  """
  coefficients: Callable[[int, float], tuple]
  normalization: tuple[float, float]
  check: Check = _no_check


@dataclasses.dataclass(frozen=True)
class DataSource:
  """A data source (`data.name`).

  prepare(config.data) -> jaxgpt.data.DataSpec (shard files, tokenizer, split sizes).
  check_data(config.data): the source's own keys (also run by `data.prepare`).
  check(config): checks across sections (e.g. raw shards need `model.vocab_size`).
  """
  prepare: Callable[[Any], Any]
  check_data: Check = _no_check
  check: Check = _no_check


@dataclasses.dataclass(frozen=True)
class RunHook:
  """Code the run driver (`jaxgpt.train.run`) calls in every run, single or cohort; registered
  by the module that owns it, and deciding from the run whether it acts.

  on_start(info): after compilation, before the first step (`info`: `jaxgpt.train.run.RunInfo`).
  on_end(info, carry, result) -> dict | None: after the summaries are written (`result`: a
    single run's summary dict, or a cohort's list of trial summaries); a returned dict is merged
    into a single run's summary.
  check(config): before a single run builds anything (`train_and_evaluate`); raises ConfigError
    for keys the hook reads (e.g. the lm_eval hook's unknown task names).
  """
  on_start: Callable[[Any], None] | None = None
  on_end: Callable[[Any, Any, Any], dict | None] | None = None
  check: Check | None = None


MODELS: Registry[ModelFamily] = Registry("model.name")
OPTIMIZERS: Registry[Optimizer] = Registry("optimizer.name")
SCHEDULES: Registry[Schedule] = Registry("optimizer.schedule")
ORTHOGONALIZERS: Registry[Orthogonalizer] = Registry("optimizer.orthogonalize")
DATA_SOURCES: Registry[DataSource] = Registry("data.name")
RUN_HOOKS: Registry[RunHook] = Registry("run hook")
