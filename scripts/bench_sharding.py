"""Sharding benchmarks on simulated CPU devices: state memory per device, and where Muon runs.

  python scripts/bench_sharding.py [--smoke] [--devices 8] [--repeats 3] [--out FILE.json]

Part 1, memory: per-device bytes of the 12 x 768 GPT's parameters + optimizer state and the
compiled train step's memory analysis under DP (8), FSDP (8) and TP (2) x FSDP (4). Part 2, Muon
on sharded matrices: the Muon update alone under each `matrix_sharding` on each mesh (FLOPs per
device, collectives, temporaries and, with --repeats > 0, the median wall time). What each part
compiles: `jaxgpt/bench/sharding.py`.

Runs with `XLA_FLAGS=--xla_force_host_platform_device_count=N` (set here before jax loads).
`--smoke` uses the `test` shapes and the FSDP mesh only, so that a test can run it in seconds.
"""

from __future__ import annotations

import os
import sys

from absl import app, flags

from jaxgpt import cli

_SMOKE = flags.DEFINE_bool("smoke", False, "Tiny test shapes, the FSDP mesh only.")
_DEVICES = flags.DEFINE_integer("devices", 8, "Simulated CPU devices.", lower_bound=1)
_REPEATS = flags.DEFINE_integer("repeats", None, "Timed Muon updates per case (default 3, 0 "
                                "with --smoke).", lower_bound=0)
_BATCH = flags.DEFINE_integer("batch", 8, "Sequences per step for part 1.", lower_bound=1)
_SKIP_MEMORY = flags.DEFINE_bool("skip_memory", False, "Skip part 1 (memory).")
_SKIP_MUON = flags.DEFINE_bool("skip_muon", False, "Skip part 2 (Muon on sharded matrices).")
_OUT = flags.DEFINE_string("out", None, "Write the results as JSON.")


def main(argv) -> int:
  cli.no_arguments(argv)
  # Imported here, once the device count is in XLA_FLAGS (below): jax reads it when it loads.
  from jaxgpt.bench import sharding
  sharding.run(smoke=_SMOKE.value, repeats=_REPEATS.value, batch=_BATCH.value,
               skip_memory=_SKIP_MEMORY.value, skip_muon=_SKIP_MUON.value, out=_OUT.value)
  return 0


if __name__ == "__main__":
  # jax reads XLA_FLAGS (the simulated device count) and JAX_PLATFORMS when it loads, so the
  # flags are parsed and the environment set before `main` imports it; `cli.run` reuses this
  # parse.
  app.define_help_flags()
  _ARGV = cli.parse_flags(sys.argv)
  os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") +
                             f" --xla_force_host_platform_device_count={_DEVICES.value}")
  os.environ.setdefault("JAX_PLATFORMS", "cpu")
  cli.run(main, parser=lambda argv: _ARGV)
