"""Multi-host start-up: join a `jax.distributed` job before anything touches the devices.

JAX is the distributed runtime; this module only decides whether to call
`jax.distributed.initialize` and with which arguments. Each argument comes from the config
(`distributed.coordinator_address`, `num_processes`, `process_id`), else from the environment
(`JAX_COORDINATOR_ADDRESS`, `JAX_NUM_PROCESSES`, `JAX_PROCESS_ID`, as `scripts/launch_local.py`
sets them), else from JAX's own cluster detection (SLURM: `SLURM_NTASKS`, `SLURM_PROCID`,
`SLURM_STEP_NODELIST`; Open MPI: `OMPI_COMM_WORLD_SIZE`, `OMPI_COMM_WORLD_RANK` and the
`mpirun` URI that names the coordinator).

`distributed.initialize`:
  auto    initialize when the job has more than one process: a coordinator address with
          num_processes > 1, a SLURM step with SLURM_NTASKS > 1, or an Open MPI launch with
          OMPI_COMM_WORLD_SIZE > 1; otherwise run as a single process (the default).
  always  always call jax.distributed.initialize (JAX detects what is not given).
  never   never call it, even inside a SLURM allocation.

On CPU, cross-process collectives need an implementation: gloo (jax 0.10's default) is selected
when none is set (`jax_cpu_collectives_implementation`); GPUs use NCCL regardless.
"""

from __future__ import annotations

import os
from typing import Any, Mapping

import jax
from absl import logging

from jaxgpt import checks

MODES = ("auto", "always", "never")  # `distributed.initialize`
ENV = {"coordinator_address": "JAX_COORDINATOR_ADDRESS", "num_processes": "JAX_NUM_PROCESSES",
       "process_id": "JAX_PROCESS_ID"}

_initialized = False


def _get(cfg: Any, key: str):
  return cfg.get(key) if hasattr(cfg, "get") else getattr(cfg, key)


def cluster_size(environ: Mapping[str, str]) -> int | None:
  """Processes of a SLURM step or an Open MPI launch found in `environ` (None: neither)."""
  if "OMPI_MCA_orte_hnp_uri" in environ and "OMPI_COMM_WORLD_SIZE" in environ:
    return int(environ["OMPI_COMM_WORLD_SIZE"])
  slurm = ("SLURM_JOB_ID", "SLURM_STEP_NODELIST", "SLURM_NTASKS", "SLURM_PROCID",
           "SLURM_LOCALID")
  if all(k in environ for k in slurm):
    return int(environ["SLURM_NTASKS"])
  return None


def init_args(cfg: Any, environ: Mapping[str, str] | None = None) -> dict | None:
  """Keyword arguments for `jax.distributed.initialize`, or None to stay single-process.

  Pure: reads `cfg` (the `distributed` config section) and `environ` only. Unset values are
  left out, so JAX's cluster detection fills them.
  """
  environ = os.environ if environ is None else environ
  mode = checks.one_of("distributed.initialize", _get(cfg, "initialize"), MODES)
  if mode == "never":
    return None
  args = {}
  for key, var in ENV.items():
    value = _get(cfg, key)
    if value is None and environ.get(var):
      value = environ[var]
      if key != "coordinator_address":
        try:
          value = int(value)
        except ValueError:
          raise ValueError(f"environment {var}={value!r} must be an integer") from None
    if value is not None:
      args[key] = value
  if mode == "always":
    return args
  if "coordinator_address" in args and args.get("num_processes", 1) > 1:
    return args
  if (cluster_size(environ) or 1) > 1:
    return args
  return None


def initialize(cfg: Any, environ: Mapping[str, str] | None = None) -> bool:
  """Joins the job if `init_args` says so; returns whether this process is in a multi-process
  job. Call once, first: JAX refuses to initialize after a backend is in use."""
  global _initialized
  if _initialized:
    return True
  args = init_args(cfg, environ)
  if args is None:
    return False
  if getattr(jax.config, "jax_cpu_collectives_implementation", None) in (None, "", "none"):
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
  logging.info("jax.distributed.initialize(%s)", args)
  jax.distributed.initialize(**args)
  _initialized = True
  return True


def is_main() -> bool:
  """Process 0: the one that writes config.json, metrics, summaries and prints them."""
  return jax.process_index() == 0
