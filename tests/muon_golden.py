"""Muon's updates and state, hashed bit for bit, across its options: the refactor's yardstick.

`tests/data/muon_golden.json` holds, per case and mode, the sha256 of every update leaf and every
optimizer-state leaf (by key path) after a few steps, computed by the single-transform Muon that
preceded the chain of small transforms. `tests/test_muon_golden.py` recomputes them with today's
code and asserts equality, so the chain is bitwise the old transform on CPU (and its state tree,
keyed by path, is the same: checkpoints written before the refactor restore).

Regenerate (only when a numeric change is intended, and say so in the commit):

    python tests/muon_golden.py --out tests/data/muon_golden.json
    python tests/muon_golden.py --sharded --out tests/data/muon_golden_sharded.json

Modes: "jit" (muon(...) under jit), "inject" (`injectable_muon`, hyperparameters in the state),
"cohort" (three trials with traced lr / momentum / weight decay / beta2 under `jax.vmap`, two
steps),
"adamw_mix" (the full partitioned Muon + AdamW chain on a small GPT-shaped tree), and with
--sharded the partitioned chain on a 2 x 2 mesh of 4 CPU devices under each `matrix_sharding`.
Each case sets several options at once, so a few compiled programs cover every option.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys

STEPS = 3

# name -> keyword arguments of jaxgpt.optim.muon.muon (after learning_rate, momentum, wd).
CASES = {
    "default": {},
    "sgd_pe_cwd": dict(momentum_style="sgd", nesterov=False, orthogonalizer="polar_express",
                       update_scale="none", cautious_wd=True),
    "ema_bc_cubic": dict(nesterov=False, bias_correction=True, orthogonalizer="newton_schulz_cubic",
                         ns_steps=8, update_scale="rms_match", rms_scale=0.3),
    "bc_nesterov_mu_bf16": dict(bias_correction=True, ns_steps=3, ns_eps=1e-8,
                                mu_dtype="bfloat16"),
    "normuon_cautious": dict(variance_reduction="normuon", beta2=0.9, cautious_update=True,
                             momentum_warmup_steps=2, momentum_warmup_start=0.8,
                             compute_dtype="bfloat16"),
    "mars_sgd": dict(variance_reduction="mars", momentum_style="sgd", mars_gamma=0.05,
                     update_scale="rms_match"),
    "mars_cautious_pe": dict(variance_reduction="mars", nesterov=False, cautious_update=True,
                             orthogonalizer="polar_express", cautious_wd=True),
}
INJECT_CASES = ("normuon_cautious", "mars_sgd")
COHORT_CASES = ("normuon_cautious", "mars_sgd")
COHORT_STEPS = 2  # unrolled inside the vmap: each step is more program to compile
MIX_CASES = ("default", "normuon_cautious")
SHARDED_RUNS = (("default", "round_robin"), ("normuon_cautious", "gather"),
                ("mars_sgd", "gspmd"))


def _kwargs(case: str) -> dict:
  import jax.numpy as jnp
  kw = dict(CASES[case])
  for key in ("mu_dtype", "compute_dtype"):
    if key in kw:
      kw[key] = jnp.dtype(kw[key])
  return kw


def _params():
  """Leaves of every layout Muon meets: 2-D both ways, a stack, a 4-D head split."""
  import jax.numpy as jnp
  import numpy as np
  rng = np.random.default_rng(0)
  r = lambda *s: jnp.asarray(rng.standard_normal(s) * 0.5, jnp.float32)
  return {"a": r(24, 40), "b": r(36, 20), "stack": r(3, 16, 28), "heads": r(2, 16, 4, 8)}


def _dims():
  from jaxgpt.optim.muon import MuonDimensionNumbers
  return {"a": MuonDimensionNumbers(0, 1), "b": MuonDimensionNumbers(0, 1),
          "stack": MuonDimensionNumbers(1, 2), "heads": MuonDimensionNumbers(1, (2, 3))}


def _grads(params, step, scale=1.0):
  import jax
  import jax.numpy as jnp
  return jax.tree.map(lambda p: jnp.sin((step + 1.7) * p * scale) + 0.1 * p * p, params)


def _hashes(tree, prefix: str) -> dict[str, str]:
  import jax
  import numpy as np
  out = {}
  for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
    x = np.asarray(leaf)
    h = hashlib.sha256(f"{x.dtype}{x.shape}".encode() + x.tobytes()).hexdigest()[:16]
    out[prefix + jax.tree_util.keystr(path)] = h
  return out


def _run(tx, params, grads_fn):
  """STEPS jitted updates; hashes of every step's updates and the final state."""
  import jax
  import optax
  state = tx.init(params)
  update = jax.jit(tx.update)
  out = {}
  for step in range(STEPS):
    u, state = update(grads_fn(params, step), state, params)
    params = optax.apply_updates(params, u)
    out.update(_hashes(u, f"u{step}"))
  out.update(_hashes(state, "state"))
  return out


def run_jit(case: str) -> dict[str, str]:
  from jaxgpt.optim.muon import muon
  return _run(muon(0.02, 0.95, 0.1, dimension_numbers=_dims(), **_kwargs(case)), _params(),
              _grads)


def run_inject(case: str) -> dict[str, str]:
  from jaxgpt.optim.muon import injectable_muon
  tx = injectable_muon(learning_rate=0.02, momentum=0.95, weight_decay=0.1,
                       dimension_numbers=_dims(), **_kwargs(case))
  return _run(tx, _params(), _grads)


def run_cohort(case: str) -> dict[str, str]:
  """Three trials under vmap, each with its own traced lr, momentum, weight decay, beta2."""
  import jax
  import jax.numpy as jnp
  import optax

  from jaxgpt.optim.muon import muon
  kw = _kwargs(case)
  kw.pop("beta2", None)
  lrs, moms = jnp.array([0.01, 0.02, 0.05]), jnp.array([0.9, 0.95, 0.8])
  wds, b2s = jnp.array([0.0, 0.1, 0.3]), jnp.array([0.9, 0.95, 0.99])

  def trial(lr, mom, wd, b2, scale):
    tx = muon(lr, mom, wd, beta2=b2, dimension_numbers=_dims(), **kw)
    params = jax.tree.map(lambda p: p * scale, _params())
    state = tx.init(params)
    us = []
    for step in range(COHORT_STEPS):
      u, state = tx.update(_grads(params, step), state, params)
      params = optax.apply_updates(params, u)
      us.append(u)
    return us, state

  us, state = jax.jit(jax.vmap(trial))(lrs, moms, wds, b2s, jnp.array([1.0, 1.1, 0.9]))
  out = {}
  for step, u in enumerate(us):
    out.update(_hashes(u, f"u{step}"))
  out.update(_hashes(state, "state"))
  return out


def _gpt_tree():
  import jax.numpy as jnp
  import numpy as np
  rng = np.random.default_rng(1)
  r = lambda *s: jnp.asarray(rng.standard_normal(s) * 0.1, jnp.float32)
  blocks = {"attn_norm": {"scale": r(2, 32)},
            "attn": {"q": {"kernel": r(2, 32, 2, 16)}, "k": {"kernel": r(2, 32, 2, 16)},
                     "v": {"kernel": r(2, 32, 2, 16)}, "o": {"kernel": r(2, 2, 16, 32)}},
            "mlp": {"fc": {"kernel": r(2, 32, 64)}, "proj": {"kernel": r(2, 64, 32)}}}
  return {"embed": {"embedding": r(64, 32)}, "final_norm": {"scale": r(32)}, "blocks": blocks}


def run_adamw_mix(case: str) -> dict[str, str]:
  """The partitioned chain a run builds: Muon on hidden matrices, AdamW on the rest."""
  import optax

  from jaxgpt.optim import partition
  from jaxgpt.optim.muon import muon
  adam = optax.adam(0.01, b1=0.8, b2=0.95, eps=1e-10)
  tx = partition.multi_transform({
      partition.MUON: muon(0.02, 0.95, 0.1, dimension_numbers=partition.muon_dims_fn(),
                           **_kwargs(case)),
      partition.ADAMW_EMBED: adam, partition.ADAMW_HEAD: adam, partition.ADAMW_SCALAR: adam})
  return _run(tx, _gpt_tree(), _grads)


def run_sharded(case: str, matrix_sharding: str) -> dict[str, str]:
  """jit mode on a 2 x 2 mesh (4 CPU devices), parameters sharded over both axes."""
  import jax
  from jax.sharding import AxisType, NamedSharding
  from jax.sharding import PartitionSpec as P

  from jaxgpt.optim import partition
  from jaxgpt.optim.muon import muon
  mesh = jax.make_mesh((2, 2), ("data", "tensor"), axis_types=(AxisType.Auto,) * 2)
  specs = {"embed": {"embedding": P("data", "tensor")}, "final_norm": {"scale": P()},
           "blocks": {"attn_norm": {"scale": P()},
                      "attn": {"q": {"kernel": P(None, "data", "tensor", None)},
                               "k": {"kernel": P(None, "data", "tensor", None)},
                               "v": {"kernel": P(None, "data", "tensor", None)},
                               "o": {"kernel": P(None, "tensor", None, "data")}},
                      "mlp": {"fc": {"kernel": P("data", None, "tensor")},
                              "proj": {"kernel": P(None, "tensor", "data")}}}}
  params = jax.tree.map(lambda x, s: jax.device_put(x, NamedSharding(mesh, s)), _gpt_tree(), specs)
  tx = muon(0.02, 0.95, 0.1, dimension_numbers=partition.muon_dims_fn(),
            matrix_sharding=matrix_sharding, **_kwargs(case))
  masked = partition.multi_transform({
      partition.MUON: tx, partition.ADAMW_EMBED: _sgd(), partition.ADAMW_HEAD: _sgd(),
      partition.ADAMW_SCALAR: _sgd()})
  with jax.set_mesh(mesh):
    return _run(masked, params, _grads)


def _sgd():
  import optax
  return optax.sgd(0.01)


def generate(sharded: bool) -> dict:
  if sharded:
    return {f"{case}/{ms}": run_sharded(case, ms) for case, ms in SHARDED_RUNS}
  out = {}
  for case in CASES:
    out[f"{case}/jit"] = run_jit(case)
  for case in INJECT_CASES:
    out[f"{case}/inject"] = run_inject(case)
  for case in COHORT_CASES:
    out[f"{case}/cohort"] = run_cohort(case)
  for case in MIX_CASES:
    out[f"{case}/adamw_mix"] = run_adamw_mix(case)
  return out


def main(argv=None) -> None:
  ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  ap.add_argument("--sharded", action="store_true", help="4 CPU devices, a 2 x 2 mesh")
  ap.add_argument("--out", default="-", help="JSON file, or - for stdout")
  args = ap.parse_args(argv)
  if args.sharded:
    os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=4"
  os.environ.setdefault("JAX_PLATFORMS", "cpu")
  text = json.dumps(generate(args.sharded), indent=1, sort_keys=True) + "\n"
  if args.out == "-":
    sys.stdout.write(text)
  else:
    with open(args.out, "w") as f:
      f.write(text)


if __name__ == "__main__":
  main()
