"""Sharding benchmarks (scripts/bench_sharding.py) on simulated CPU devices:
state memory per device, and where Muon runs.

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

Import this module after the device count is set
(`XLA_FLAGS=--xla_force_host_platform_device_count=N` before jax loads, as the script does);
`smoke` uses the `test` shapes and the FSDP mesh only.
"""

from __future__ import annotations

import re
import time

import jax
import jax.numpy as jnp
import numpy as np

from jaxgpt import cli
from jaxgpt.bench import output, timing
from jaxgpt.optim import muon as muon_lib
from jaxgpt.optim import orthogonalize as ortho
from jaxgpt.optim import partition
from jaxgpt.parallel import rules
from jaxgpt.train import setup
from jaxgpt.train import step as step_lib

MESHES = {"DP(8)": (8, 1, 1), "FSDP(8)": (1, 8, 1), "TP(2)xFSDP(4)": (1, 4, 2)}
SMOKE_MESHES = {"FSDP(8)": (1, 8, 1)}  # one mesh: the test that runs --smoke stays short
COLLECTIVES = ("all-gather", "all-reduce", "all-to-all", "reduce-scatter", "collective-permute")


def load_config(smoke: bool, mesh: tuple[int, int, int], batch: int):
  """configs/gpt.py (the 124M GPT, f32) or its `test` size, on `mesh` (data, fsdp, tensor)."""
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
  """Part 1 on one mesh: state bytes per device and the compiled train step's memory."""
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
  """How many of each collective the compiled HLO holds."""
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
  """Part 2 on one mesh and `matrix_sharding` strategy: FLOPs, collectives, memory, time."""
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
    ma = compiled.memory_analysis()
    out = {"mesh": mesh_name, "strategy": strategy,
           "flops_per_device": timing.compiled_flops(compiled),
           "temp_bytes": int(ma.temp_size_in_bytes),
           "collectives": _collectives(compiled.as_text()),
           "collective_bytes": _collective_bytes(compiled.as_text()),
           "muon_leaves": len(jax.tree.leaves(params))}
    if repeats > 0:
      rng = np.random.default_rng(0)
      g = jax.tree.map(lambda x, s: jax.device_put(
          rng.standard_normal(x.shape).astype(np.float32), s), params, shardings)
      fresh_mu = lambda: (g, jax.tree.map(jnp.zeros_like, g))  # noqa: E731 - mu is donated
      out["median_s"] = timing.median_seconds(compiled, repeats, setup=fresh_mu)
  return out


MIB = 1 << 20
MEMORY = output.Table(
    output.Column("mesh", "mesh", width=15, left=True),
    output.Column("state MiB/dev", lambda r: r["state_bytes_per_device"] / MIB, ".2f", width=14),
    output.Column("of total MiB", lambda r: r["state_bytes_total"] / MIB, ".2f", width=13),
    output.Column("args MiB", lambda r: r["compiled_argument_bytes"] / MIB, ".2f", width=9),
    output.Column("temp MiB", lambda r: r["compiled_temp_bytes"] / MIB, ".2f", width=9))
MUON = output.Table(
    output.Column("mesh", "mesh", width=15, left=True),
    output.Column("strategy", "strategy", width=12, left=True),
    output.Column("GFLOP/dev", lambda r: r["flops_per_device"] / 1e9, ".3f", width=10),
    output.Column("temp MiB", lambda r: r["temp_bytes"] / MIB, ".2f", width=9),
    output.Column("comm MiB", lambda r: r["collective_bytes"] / MIB, ".2f", width=9),
    output.Column("collectives", lambda r: ", ".join(
        f"{k} {v}" for k, v in r["collectives"].items() if v) or "-", width=40, left=True),
    output.Column("median s", "median_s", ".3f", width=9))


def run(smoke: bool = False, repeats: int | None = None, batch: int = 8,
        skip_memory: bool = False, skip_muon: bool = False, out: str | None = None) -> dict:
  """Both parts (each row printed as it is measured); `repeats` defaults to 3, 0 with `smoke`.
  Returns the JSON, also written to `out`."""
  meshes = SMOKE_MESHES if smoke else MESHES
  repeats = repeats if repeats is not None else (0 if smoke else 3)
  results = {"devices": jax.device_count(), "backend": jax.default_backend(),
             "smoke": smoke, "memory": [], "muon": []}
  if not skip_memory:
    print(MEMORY.header(), flush=True)
    for name, mesh in meshes.items():
      results["memory"].append(memory_case(name, mesh, smoke, batch))
      print(MEMORY.line(results["memory"][-1]), flush=True)
  if not skip_muon:
    print("\n" + MUON.header(), flush=True)
    for name, mesh in meshes.items():
      for strategy in ortho.SHARDINGS:
        results["muon"].append(muon_case(name, mesh, strategy, smoke, repeats))
        print(MUON.line(results["muon"][-1]), flush=True)
  output.emit(results, out)
  return results
