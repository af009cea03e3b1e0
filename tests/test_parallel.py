"""Sharded training: rules, divisibility errors, exactness on DP / FSDP / TP / mixed meshes.

The multi-device cases run in one subprocess with 8 simulated CPU devices (XLA_FLAGS set before
jax loads), combined to pay start-up and compiles once; the rest run in this process.
"""

import os
import subprocess
import sys

import pytest
from jax.sharding import AbstractMesh
from jax.sharding import PartitionSpec as P

from jaxgpt.optim import orthogonalize as ortho
from jaxgpt.parallel import rules
from tests.helpers import ROOT

# Subprocesses: 8 CPU devices; XLA's LLVM passes at level 0 halve compile time on CPU (the
# comparisons are between programs compiled with the same flags).
SUBPROCESS_XLA_FLAGS = ("--xla_force_host_platform_device_count=8 "
                        "--xla_backend_optimization_level=0")


def run_script(script: str, timeout: float = 600) -> str:
  env = dict(os.environ, XLA_FLAGS=SUBPROCESS_XLA_FLAGS, TF_CPP_MIN_LOG_LEVEL="3",
             PYTHONPATH=str(ROOT))
  proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                        timeout=timeout, env=env, cwd=str(ROOT))
  assert proc.returncode == 0 and "OK" in proc.stdout, (proc.stdout[-3000:] +
                                                          proc.stderr[-5000:])
  return proc.stdout


def tiny_shards(folder) -> dict:
  """Token shards small enough that a run's final evaluation (the whole validation split) is
  one batch; returns the config overrides that point a run at them."""
  import numpy as np

  from jaxgpt.data.shards import write_shard
  rng = np.random.default_rng(0)
  write_shard(os.path.join(folder, "train_0.bin"), rng.integers(0, 256, 40_000, dtype=np.uint16))
  write_shard(os.path.join(folder, "val_0.bin"), rng.integers(0, 256, 2_000, dtype=np.uint16))
  return {"data__name": "shards", "data__train_pattern": os.path.join(folder, "train_*.bin"),
          "data__val_pattern": os.path.join(folder, "val_*.bin"), "model__vocab_size": 256}


def _mesh(data=1, fsdp=1, tensor=1):
  return AbstractMesh((data, fsdp, tensor), ("data", "fsdp", "tensor"))


# ------------------------------------------------------------------------------------------
# Rules and divisibility (no devices needed: an abstract mesh carries the axis sizes).

def test_leaf_spec_follows_rules():
  spec, notes = rules.leaf_spec("blocks/attn/q/kernel", (2, 32, 4, 8),
                                ("layers", "embed", "heads", "head_dim"), _mesh(2, 4, 2))
  assert spec == P(None, "fsdp", "tensor", None) and notes == []
  spec, _ = rules.leaf_spec("embed/embedding", (256, 32), ("vocab", "embed"), _mesh(1, 2, 2))
  assert spec == P("tensor", "fsdp")


@pytest.mark.parametrize("path,shape,names,mesh,match", [
    ("blocks/attn/q/kernel", (2, 32, 4, 8), ("layers", "embed", "heads", "head_dim"),
     _mesh(tensor=3), r"blocks/attn/q/kernel axis 2 \('heads', size 4\).*mesh.tensor=3.*"
                      r"model.num_heads"),
    ("blocks/mlp/fc/kernel", (2, 32, 100), ("layers", "embed", "mlp"), _mesh(tensor=8),
     r"'mlp', size 100.*mesh.tensor=8.*model.mlp_mult"),
    ("embed/embedding", (250, 32), ("vocab", "embed"), _mesh(tensor=4),
     r"'vocab', size 250.*model.vocab_size"),
    ("final_norm/scale", (30,), ("embed",), _mesh(fsdp=4), r"'embed', size 30.*model.d_model"),
])
def test_non_dividing_axis_is_a_named_error(path, shape, names, mesh, match):
  with pytest.raises(rules.ShardingError, match=match):
    rules.leaf_spec(path, shape, names, mesh)


def test_kv_heads_fall_back_to_replication_with_a_note():
  spec, notes = rules.leaf_spec("blocks/attn/k/kernel", (2, 32, 1, 8),
                                ("layers", "embed", "kv_heads", "head_dim"), _mesh(2, 2, 2))
  assert spec == P(None, "fsdp", None, None)
  assert len(notes) == 1 and "blocks/attn/k/kernel" in notes[0] and "replicating" in notes[0]


def test_deal_axes_balances_whole_matrices():
  assert ortho.deal_axes(12, {"data": 1, "fsdp": 8, "tensor": 1}) == ("fsdp",)  # 2 per device
  assert ortho.deal_axes(2, {"data": 2, "fsdp": 2, "tensor": 2}) == ("data",)  # 1, less padding
  assert ortho.deal_axes(16, {"data": 2, "fsdp": 4, "tensor": 1}) == ("data", "fsdp")
  assert ortho.deal_axes(1, {"data": 8, "fsdp": 1, "tensor": 1}) == ()  # one matrix: gather


def test_build_refuses_heads_that_do_not_divide_tensor():
  """A real model's boxed parameters: heads that do not divide mesh.tensor are refused naming
  model.num_heads; dividing ones map as the rules say (abstract meshes: no devices needed)."""
  import jax

  from jaxgpt import models
  from tests.helpers import load_config
  cfg = load_config("gpt", "test")
  model = models.build_model(cfg.model, 256)
  boxed = jax.eval_shape(lambda: model.init(jax.random.PRNGKey(0),
                                            jax.numpy.zeros((1, 8), "int32")))["params"]
  with pytest.raises(rules.ShardingError, match="model.num_heads"):
    rules.param_specs(boxed, _mesh(tensor=3))
  specs = rules.param_specs(boxed, _mesh(1, 2, 2))
  assert specs["blocks"]["mlp"]["fc"]["kernel"] == P(None, "fsdp", "tensor")


# ------------------------------------------------------------------------------------------
# 8 devices: same loss and parameters as one device; shardings as the rules say.

_EQUIV_SCRIPT = r"""
import jax, jax.numpy as jnp, numpy as np
from jax.sharding import PartitionSpec as P
from jaxgpt.optim import orthogonalize as ortho
from jaxgpt.parallel import rules
from jaxgpt.train import setup, step as step_lib
from tests.helpers import load_config
assert jax.device_count() == 8
STEPS, B, T = 3, 8, 32
rng = np.random.default_rng(0)
BATCHES = [{k: rng.integers(0, 256, (B, T)).astype(np.int32) for k in ("inputs", "targets")}
           for _ in range(STEPS)]

def build(opt, mesh, ndev, **opt_kw):
  cfg = load_config("gpt", "test", optimizer__name=opt, train__batch_size=B)
  cfg.unlock()
  cfg.mesh.update(dict(zip(("data", "fsdp", "tensor"), mesh)))
  cfg.optimizer.update(variance_reduction="normuon", **opt_kw)  # per-row state leaves too
  return setup.build(cfg, jax.devices()[:ndev])

def train(run, state0, fn=None):
  state = jax.device_put(state0, run.state_shardings)
  fn = fn or step_lib.make_train_step(run.model.apply, run.tx, 1)
  bsh, repl = rules.batch_sharding(run.mesh), rules.replicated(run.mesh)
  losses = []
  with run.context():
    f = jax.jit(fn, in_shardings=(run.state_shardings, bsh, repl),
                out_shardings=(run.state_shardings, repl), donate_argnums=(0,))
    for i, b in enumerate(BATCHES):
      state, m = f(state, rules.global_batch(b, run.mesh), jnp.float32(i / 12))
      losses.append(float(m["train_loss"]))
  return np.array(losses), state

def check_shardings(run, state, name):
  # The expected layout, written out from the rules table: (logical names -> mesh axes).
  want = {"embed/embedding": ("tensor", "fsdp"), "final_norm/scale": ("fsdp",),
          "blocks/attn/q/kernel": (None, "fsdp", "tensor", None),
          "blocks/attn/k/kernel": (None, "fsdp", "tensor", None),
          "blocks/attn/o/kernel": (None, "tensor", None, "fsdp"),
          "blocks/attn/q_norm/scale": (None, None),
          "blocks/mlp/fc/kernel": (None, "fsdp", "tensor"),
          "blocks/mlp/proj/kernel": (None, "tensor", "fsdp"),
          "blocks/attn/v/kernel": (None, "fsdp", "tensor", None),
          "blocks/attn/k_norm/scale": (None, None),
          "blocks/attn_norm/scale": (None, "fsdp"), "blocks/mlp_norm/scale": (None, "fsdp")}
  sizes = dict(run.mesh.shape)
  flat = {"/".join(str(k.key) for k in p): x
          for p, x in jax.tree_util.tree_flatten_with_path(state.params)[0]}
  assert set(flat) == set(want), sorted(set(flat) ^ set(want))  # every parameter leaf
  seen = 0
  for path, axes in want.items():
    x = flat[path]
    spec = tuple(x.sharding.spec) + (None,) * (x.ndim - len(x.sharding.spec))
    expect = tuple(a if a and sizes[a] > 1 else None for a in axes)
    got = tuple(a if a and sizes[a] > 1 else None for a in spec)
    assert got == expect, (name, path, spec, axes)
    local = x.addressable_shards[0].data.shape
    for n, l, a in zip(x.shape, local, expect):
      assert l == (n // sizes[a] if a else n), (name, path, x.shape, local)
    seen += any(expect)
    # every optimizer-state leaf that mirrors this parameter is sharded like it
    for sp, leaf in jax.tree_util.tree_flatten_with_path(state.opt_state)[0]:
      keys = "/".join(str(getattr(k, "key", getattr(k, "name", getattr(k, "idx", k))))
                      for k in sp)
      if keys.endswith(path) and leaf.ndim == x.ndim:
        lspec = tuple(leaf.sharding.spec) + (None,) * (leaf.ndim - len(leaf.sharding.spec))
        for n, a, s in zip(leaf.shape, spec, lspec):
          assert s == (a if n > 1 else None), (name, keys, leaf.shape, lspec, spec)
        seen += 1
  assert seen >= 12, seen
  return seen

# Muon (with NorMuon state) on DP, FSDP, TP and a mixed mesh; AdamW on the mixed mesh.
CASES = {"muon": [("dp", (8, 1, 1), 8), ("fsdp", (1, 8, 1), 8), ("tp", (1, 1, 4), 4),
                  ("mixed", (2, 2, 2), 8)],
         "adamw": [("mixed", (2, 2, 2), 8)]}
for opt, cases in CASES.items():
  kw = {"lr": 3e-3} if opt == "adamw" else {}
  ref_run = build(opt, (1, 1, 1), 1, **kw)
  state0 = jax.device_get(ref_run.init_state())
  ref_losses, ref_state = train(ref_run, state0)
  ref_params = jax.device_get(ref_state.params)
  moved = max(float(np.max(np.abs(a - b))) for a, b in zip(jax.tree.leaves(ref_params),
                                                          jax.tree.leaves(state0.params)))
  assert moved > 1e-3, moved  # the steps really train, so a wrong update cannot pass
  for name, mesh, ndev in cases:
    run = build(opt, mesh, ndev, **kw)
    losses, state = train(run, state0)
    np.testing.assert_allclose(losses, ref_losses, rtol=0, atol=1e-5, err_msg=f"{opt} {name}")
    for a, b in zip(jax.tree.leaves(jax.device_get(state.params)), jax.tree.leaves(ref_params)):
      np.testing.assert_allclose(a, b, rtol=0, atol=1e-5, err_msg=f"{opt} {name}")
    if name in ("fsdp", "mixed", "tp"):
      check_shardings(run, state, f"{opt} {name}")
    print(opt, name, "max loss diff", float(np.max(np.abs(losses - ref_losses))), flush=True)

# MoE (4 experts, top-2, router noise and the load-balance loss on, the router under Muon):
# experts sharded over mesh.expert = 2 and 4 (the rest data parallel) train as on one device.
from jaxgpt import models

def build_moe(mesh, ndev):
  cfg = load_config("moe", "test", train__batch_size=B, optimizer__router="muon")
  cfg.unlock()
  cfg.mesh.update(dict(zip(("data", "fsdp", "tensor", "expert"), mesh)))
  run = setup.build(cfg, jax.devices()[:ndev])
  fam = models.family("moe")
  run.train_fn = step_lib.make_train_step(run.model.apply, run.tx, 1, fam.collections,
                                          fam.rng_streams, 0)
  return run

ref_run = build_moe((1, 1, 1, 1), 1)
state0 = jax.device_get(ref_run.init_state())
ref_losses, ref_state = train(ref_run, state0, ref_run.train_fn)
ref_params = jax.device_get(ref_state.params)
for name, mesh in (("expert2", (4, 1, 1, 2)), ("expert4", (2, 1, 1, 4))):
  run = build_moe(mesh, 8)
  losses, state = train(run, state0, run.train_fn)
  np.testing.assert_allclose(losses, ref_losses, rtol=0, atol=1e-5, err_msg=name)
  for a, b in zip(jax.tree.leaves(jax.device_get(state.params)), jax.tree.leaves(ref_params)):
    np.testing.assert_allclose(a, b, rtol=0, atol=1e-5, err_msg=name)
  fc = state.params["blocks"]["mlp"]["experts"]["fc"]["kernel"]  # (layers, E, d, f)
  assert tuple(fc.sharding.spec)[:2] == (None, "expert"), fc.sharding.spec
  assert fc.addressable_shards[0].data.shape[1] == fc.shape[1] // mesh[3], name
  print("moe", name, "max loss diff", float(np.max(np.abs(losses - ref_losses))), flush=True)

# Every matrix_sharding gives the exact (float64 SVD) orthogonalization on a sharded stack.
mesh = jax.make_mesh((2, 2, 2), ("data", "fsdp", "tensor"),
                     axis_types=(jax.sharding.AxisType.Auto,) * 3)
g = rng.standard_normal((4, 16, 24)).astype(np.float32)
want = np.stack([ortho.closed_form(m.astype(np.float64)) for m in g])
xs = jax.device_put(g, jax.sharding.NamedSharding(mesh, P(None, "fsdp", "tensor")))
with jax.set_mesh(mesh):
  for s in ortho.SHARDINGS:
    out = jax.jit(lambda x: ortho.orthogonalize(x, sharding=s))(xs)
    np.testing.assert_allclose(np.asarray(out), want, atol=2e-5, err_msg=s)
print("OK")
"""


# ------------------------------------------------------------------------------------------
# Restore onto a different mesh: saved on (data 2, fsdp 4), restored on (data 4, fsdp 2) and
# continued; then (below, in this 1-device process) restored on one device and continued. A
# constant learning rate makes a run that stops and resumes comparable with a straight one.

_RESTORE_SCRIPT = r"""
import json, os, jax, numpy as np
from jaxgpt.train import checkpoint as ckpt_lib, loop, setup
from jaxgpt.train import run as train_run
from tests.helpers import load_config
WORK = os.environ["RESTORE_WORKDIR"]

SHARDS = json.load(open(WORK + "/shards.json"))

def cfg(mesh, steps):
  c = load_config("gpt", "test", train__batch_size=8, train__steps=steps, train__eval_every=100,
                  optimizer__schedule="constant", optimizer__warmup_frac=0.0, **SHARDS)
  c.unlock()
  c.mesh.update(dict(zip(("data", "fsdp", "tensor"), mesh)))
  return c

def losses(workdir):
  return {r["step"]: r["train_loss"] for r in map(json.loads, open(workdir + "/metrics.jsonl"))
          if "train_loss" in r}

run_dir, straight_dir = WORK + "/run", WORK + "/straight"
s1 = train_run.train_and_evaluate(cfg((2, 4, 1), 4), run_dir)
assert s1["mesh"] == {"data": 2, "fsdp": 4, "tensor": 1, "expert": 1}, s1["mesh"]
assert json.load(open(run_dir + "/summary.json"))["mesh"] == s1["mesh"]

# The step-4 checkpoint onto both layouts: the same values, each in its own sharding.
mngr = ckpt_lib.manager(run_dir + "/checkpoints", keep_latest=2, keep_best=1, async_save=False)
old_run, new_run = setup.build(cfg((2, 4, 1), 6)), setup.build(cfg((4, 2, 1), 6))
old, _, _ = ckpt_lib.restore(mngr, old_run.abstract_state, 4)
new, _, meta = ckpt_lib.restore(mngr, new_run.abstract_state, 4)
mngr.close()
for a, b, sh in zip(jax.tree.leaves(old), jax.tree.leaves(new),
                    jax.tree.leaves(new_run.state_shardings)):
  np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
  assert b.sharding.is_equivalent_to(sh, b.ndim), (b.sharding, sh)
q = new.params["blocks"]["attn"]["q"]["kernel"]
assert q.addressable_shards[0].data.shape[1] == q.shape[1] // 2  # fsdp 2, not 4

s2 = train_run.train_and_evaluate(cfg((4, 2, 1), 6), run_dir, allow_config_change=True)
assert s2["mesh"] == {"data": 4, "fsdp": 2, "tensor": 1, "expert": 1} and s2["steps"] == 6, s2
s3 = train_run.train_and_evaluate(cfg((2, 4, 1), 8), straight_dir)
got, want = losses(run_dir), losses(straight_dir)
assert sorted(got) == [2, 4, 6], got
for step in (2, 4, 6):
  np.testing.assert_allclose(got[step], want[step], rtol=0, atol=1e-5, err_msg=str(step))
json.dump({"want": want, "final_val_loss": s3["final_val_loss"]},
          open(WORK + "/straight.json", "w"))

# The sharding benchmark's --smoke size, in this process (8 devices already up).
from jaxgpt.bench import sharding
sharding.run(smoke=True, out=WORK + "/bench.json")
print("OK")
"""


@pytest.fixture(scope="module")
def eight_device_run(tmp_path_factory):
  """One subprocess (8 devices) for the equivalence and restore cases: one start-up."""
  import json
  workdir = tmp_path_factory.mktemp("restore")
  json.dump(tiny_shards(str(workdir)), open(workdir / "shards.json", "w"))
  os.environ["RESTORE_WORKDIR"] = str(workdir)
  try:
    out = run_script(_EQUIV_SCRIPT.replace('print("OK")', 'print("EQUIV_OK")') +
                     _RESTORE_SCRIPT, timeout=900)
  finally:
    os.environ.pop("RESTORE_WORKDIR", None)
  return out, workdir


@pytest.mark.multidevice
def test_sharded_training_matches_one_device(eight_device_run):
  out, _ = eight_device_run
  assert "EQUIV_OK" in out and out.count("max loss diff") == 7, out
  assert out.count("moe expert") == 2, out


@pytest.mark.multidevice
def test_bench_sharding_smoke(eight_device_run):
  """FSDP(8) state is an eighth of the whole (bar replicated scalars); dealing matrices out
  cuts each device's Muon FLOPs below gathering them."""
  import json
  _, workdir = eight_device_run
  res = json.load(open(workdir / "bench.json"))
  (mem,) = res["memory"]
  total, per_device = mem["state_bytes_total"], mem["state_bytes_per_device"]
  assert total / 8 <= per_device < total / 7
  assert mem["compiled_argument_bytes"] >= mem["state_bytes_per_device"]
  flops = {r["strategy"]: r["flops_per_device"] for r in res["muon"]}
  assert set(flops) == {"round_robin", "gather", "gspmd"}
  assert flops["round_robin"] < 0.75 * flops["gather"], flops


@pytest.mark.multidevice
def test_restore_onto_other_meshes_and_continue(eight_device_run):
  """(2, 4) -> (4, 2) checked in the subprocess; here (4, 2) -> 1 device, two more steps."""
  import json

  from jaxgpt.train import run as train_run
  from tests.helpers import load_config
  _, workdir = eight_device_run
  straight = json.load(open(workdir / "straight.json"))
  cfg = load_config("gpt", "test", train__batch_size=8, train__steps=8, train__eval_every=100,
                    optimizer__schedule="constant", optimizer__warmup_frac=0.0,
                    **json.load(open(workdir / "shards.json")))
  summary = train_run.train_and_evaluate(cfg, str(workdir / "run"), allow_config_change=True)
  assert summary["mesh"] == {"data": 1, "fsdp": 1, "tensor": 1, "expert": 1}
  assert summary["steps"] == 8
  records = [json.loads(line) for line in open(workdir / "run" / "metrics.jsonl")]
  got = {r["step"]: r["train_loss"] for r in records if "train_loss" in r}
  assert sorted(got) == [2, 4, 6, 8], got
  assert abs(got[8] - straight["want"]["8"]) < 1e-5, (got, straight)
  assert abs(summary["final_val_loss"] - straight["final_val_loss"]) < 1e-5
