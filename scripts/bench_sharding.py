"""Sharding benchmarks on simulated CPU devices: state memory per device, and where Muon runs.

  python scripts/bench_sharding.py [--smoke] [--devices 8] [--repeats 3] [--out FILE.json]

Part 1, memory: for the 12 x 768 GPT (configs/gpt.py's default shape, GPT-2 vocabulary 50304,
seq 1024, Muon + Adam) under DP (8), FSDP (8) and TP (2) x FSDP (4), the per-device bytes of
parameters + optimizer state (from the shard shapes of the train state's shardings) and the
compiled train step's memory analysis (`compiled.memory_analysis()`: arguments, outputs,
temporaries, per device). These figures are deterministic.

Part 2, Muon on sharded matrices: the Muon update of the hidden matrices alone, compiled with
each `matrix_sharding` ("round_robin", "gather", "gspmd") on each mesh: per-device FLOPs (XLA's
cost analysis of the partitioned program), the collectives in the compiled HLO, temporary bytes,
and (with --repeats > 0) the median wall time of one update. Times on simulated devices that
share a few CPU cores say little about GPUs; FLOPs and collectives are deterministic.

Runs with `XLA_FLAGS=--xla_force_host_platform_device_count=N` (set here before jax loads).
`--smoke` uses the `test` shapes and the FSDP mesh only, so that a test can run it in seconds.
"""

from __future__ import annotations

import json
import os
import re
import sys
import time

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


def _parse(argv: list[str]):
  """Parses `argv` (flags only, no program name) and returns `flags.FLAGS`, which `main` reads
  (`.smoke`, `.repeats`, ...): for a caller that imports this module in a process whose devices
  are already up (tests/test_parallel.py)."""
  cli.no_arguments(cli.parse_flags(["bench_sharding", *argv]))
  return flags.FLAGS


if __name__ == "__main__":
  # jax reads XLA_FLAGS (the simulated device count) and JAX_PLATFORMS when it loads, so the
  # flags are parsed and the environment set before the jax imports below; `app.run` at the end
  # reuses this parse.
  app.define_help_flags()
  _ARGV = cli.parse_flags(sys.argv)
  os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") +
                             f" --xla_force_host_platform_device_count={_DEVICES.value}")
  os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from jaxgpt.optim import muon as muon_lib  # noqa: E402
from jaxgpt.optim import orthogonalize as ortho  # noqa: E402
from jaxgpt.optim import partition  # noqa: E402
from jaxgpt.parallel import rules  # noqa: E402
from jaxgpt.train import setup  # noqa: E402
from jaxgpt.train import step as step_lib  # noqa: E402

MESHES = {"DP(8)": (8, 1, 1), "FSDP(8)": (1, 8, 1), "TP(2)xFSDP(4)": (1, 4, 2)}
SMOKE_MESHES = {"FSDP(8)": (1, 8, 1)}  # one mesh: the test that runs --smoke stays short
COLLECTIVES = ("all-gather", "all-reduce", "all-to-all", "reduce-scatter", "collective-permute")


def load_config(smoke: bool, mesh: tuple[int, int, int], batch: int):
  overrides = {**{f"mesh.{k}": v for k, v in zip(("data", "fsdp", "tensor"), mesh)},
               "train.batch_size": batch, "train.eval_batch_size": batch}
  if not smoke:
    overrides["model.vocab_size"] = 50304  # the GPT-2 vocabulary, padded: the 124M model
    overrides["model.compute_dtype"] = "float32"  # CPU: XLA's CPU backend has no fast bf16 path
  return cli.load_config("configs/gpt.py:test" if smoke else "configs/gpt.py", overrides)


def state_bytes_per_device(abstract_state) -> int:
  """Bytes of one device's shard of every leaf (params + optimizer state + step)."""
  total = 0
  for leaf in jax.tree.leaves(abstract_state):
    shard = leaf.sharding.shard_shape(leaf.shape)
    total += int(np.prod(shard)) * jnp.dtype(leaf.dtype).itemsize
  return total


def memory_case(name: str, mesh, smoke: bool, batch: int) -> dict:
  cfg = load_config(smoke, mesh, batch)
  run = setup.build(cfg)
  fn = step_lib.make_train_step(run.model.apply, run.tx, 1)
  bsh, repl = rules.batch_sharding(run.mesh), rules.replicated(run.mesh)
  t = cfg.data.seq_len
  b = {k: jax.ShapeDtypeStruct((batch, t), jnp.int32, sharding=bsh) for k in ("inputs", "targets")}
  t0 = time.perf_counter()
  with run.context():
    compiled = jax.jit(fn, in_shardings=(run.state_shardings, bsh, repl),
                       out_shardings=(run.state_shardings, repl), donate_argnums=(0,)).lower(
                           run.abstract_state, b,
                           jax.ShapeDtypeStruct((), jnp.float32, sharding=repl)).compile()
  ma = compiled.memory_analysis()
  total_state = sum(int(np.prod(x.shape)) * jnp.dtype(x.dtype).itemsize
                    for x in jax.tree.leaves(run.abstract_state))
  return {
      "mesh": name, "axes": dict(zip(("data", "fsdp", "tensor"), mesh)),
      "state_bytes_total": total_state,
      "state_bytes_per_device": state_bytes_per_device(run.abstract_state),
      "compiled_argument_bytes": int(ma.argument_size_in_bytes),
      "compiled_output_bytes": int(ma.output_size_in_bytes),
      "compiled_alias_bytes": int(ma.alias_size_in_bytes),
      "compiled_temp_bytes": int(ma.temp_size_in_bytes),
      "tokens_per_step": batch * t, "compile_s": time.perf_counter() - t0,
  }


_DTYPE_BYTES = {"f32": 4, "bf16": 2, "f16": 2, "s32": 4, "u32": 4, "f64": 8, "pred": 1}


def _collectives(hlo: str) -> dict[str, int]:
  return {op: len(re.findall(rf"\s{op}(-start)?\(", hlo)) for op in COLLECTIVES}


def _collective_bytes(hlo: str) -> int:
  """Bytes of the results of every collective in the partitioned program (one device's)."""
  total = 0
  for line in hlo.splitlines():
    m = re.search(rf"=\s(.*?)\s({'|'.join(COLLECTIVES)})(-start)?\(", line)
    if not m:
      continue
    for dtype, dims in re.findall(r"\b(f32|bf16|f16|s32|u32|f64|pred)\[([0-9,]*)\]", m.group(1)):
      n = 1
      for d in filter(None, dims.split(",")):
        n *= int(d)
      total += n * _DTYPE_BYTES[dtype]
  return total


def muon_case(mesh_name: str, mesh, strategy: str, smoke: bool, repeats: int) -> dict:
  cfg = load_config(smoke, mesh, 8)
  run = setup.build(cfg)
  labels = partition.param_labels(run.abstract_state.params)

  def keep(tree):
    return jax.tree.map(lambda x, label: x if label == partition.MUON else None, tree, labels)

  params = keep(run.abstract_state.params)
  shardings = keep(run.state_shardings.params)
  tx = muon_lib.scale_by_muon(dimension_numbers=partition.muon_dims_fn(),
                              matrix_sharding=strategy)

  def update(grads, mu):
    state = muon_lib.MuonState(count=jnp.zeros([], jnp.int32), mu=mu, nu=None, prev_grad=None)
    u, s = tx.update(grads, state)
    return u, s.mu

  with run.context():
    jitted = jax.jit(update, in_shardings=(shardings, shardings),
                     out_shardings=(shardings, shardings), donate_argnums=(1,))
    compiled = jitted.lower(params, params).compile()
    cost = compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, (list, tuple)) else cost
    ma = compiled.memory_analysis()
    out = {"mesh": mesh_name, "strategy": strategy,
           "flops_per_device": float(cost.get("flops", float("nan"))),
           "temp_bytes": int(ma.temp_size_in_bytes),
           "collectives": _collectives(compiled.as_text()),
           "collective_bytes": _collective_bytes(compiled.as_text()),
           "muon_leaves": len(jax.tree.leaves(params))}
    if repeats > 0:
      rng = np.random.default_rng(0)
      g = jax.tree.map(lambda x, s: jax.device_put(
          rng.standard_normal(x.shape).astype(np.float32), s), params, shardings)
      times = []
      for _ in range(repeats + 1):
        mu = jax.tree.map(lambda x: jnp.zeros_like(x), g)
        t0 = time.perf_counter()
        jax.block_until_ready(compiled(g, mu))
        times.append(time.perf_counter() - t0)
      out["median_s"] = float(np.median(times[1:]))  # the first call warms up
  return out


def main(args) -> dict:
  """Both parts; `args` is the parsed flags (`_parse`)."""
  meshes = SMOKE_MESHES if args.smoke else MESHES
  repeats = args.repeats if args.repeats is not None else (0 if args.smoke else 3)
  results = {"devices": jax.device_count(), "backend": jax.default_backend(),
             "smoke": args.smoke, "memory": [], "muon": []}
  if not args.skip_memory:
    print(f"{'mesh':<15} {'state MiB/dev':>14} {'of total MiB':>13} {'args MiB':>9} "
          f"{'temp MiB':>9}", flush=True)
    for name, mesh in meshes.items():
      r = memory_case(name, mesh, args.smoke, args.batch)
      results["memory"].append(r)
      mib = 1 << 20
      print(f"{name:<15} {r['state_bytes_per_device'] / mib:>14.2f} "
            f"{r['state_bytes_total'] / mib:>13.2f} {r['compiled_argument_bytes'] / mib:>9.2f} "
            f"{r['compiled_temp_bytes'] / mib:>9.2f}", flush=True)
  if not args.skip_muon:
    print(f"\n{'mesh':<15} {'strategy':<12} {'GFLOP/dev':>10} {'temp MiB':>9} "
          f"{'comm MiB':>9} {'collectives':<40} {'median s':>9}", flush=True)
    for name, mesh in meshes.items():
      for strategy in ortho.SHARDINGS:
        r = muon_case(name, mesh, strategy, args.smoke, repeats)
        results["muon"].append(r)
        coll = ", ".join(f"{k} {v}" for k, v in r["collectives"].items() if v)
        t = f"{r['median_s']:.3f}" if "median_s" in r else "-"
        print(f"{name:<15} {strategy:<12} {r['flops_per_device'] / 1e9:>10.3f} "
              f"{r['temp_bytes'] / (1 << 20):>9.2f} {r['collective_bytes'] / (1 << 20):>9.2f} "
              f"{coll or '-':<40} {t:>9}", flush=True)
  if args.out:
    with open(args.out, "w") as f:
      json.dump(results, f, indent=1)
  return results


def _app_main(argv) -> int:
  cli.no_arguments(argv)
  main(flags.FLAGS)
  return 0


if __name__ == "__main__":
  cli.run(_app_main, parser=lambda argv: _ARGV)
