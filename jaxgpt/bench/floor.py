"""The plain-JAX floor (scripts/bench_floor.py): jaxgpt's train step against the same model in a
page of jnp + optax, timed in one process.

Two model families have a floor (`model.name`):
  gpt         jaxgpt's GPT function (token embedding, pre-norm blocks of RMSNorm, q/k/v, QK-norm,
              rotate-half RoPE, causal softmax attention, output projection, MLP with the
              config's activation, final RMSNorm, tied head, float32 cross entropy), trained
              with optax (`optax.adamw`, or `optax.contrib.muon` for a Muon config); below.
  gated_ngpt  jaxgpt's gated nGPT (`floor_ngpt`: unit-norm stream, gated residuals, cosine
              logits), trained with `optax.contrib.muon` and a lazy projection of the matrices
              onto the unit sphere every `optimizer.lazy_proj_freq` steps.
Both use plain 2-D weight matrices, in one jitted step with the state donated, in two layouts:
a Python loop over layers (unrolled) and `lax.scan` over stacked layers. jaxgpt's own step
(`train/step.py`, the model from the config, the optimizer chain from `optim/build.py`) runs in
the same process, jitted the same way, as configured and with `model.scan_layers` flipped, and
(`loop`) the real training loop on the config as it is (its per-step host work and input
pipeline included). The floor starts from jaxgpt's initial weights and must give jaxgpt's
initial loss (to 1e-4): the same function. Rows are timed in interleaved rounds (each row gets
`steps` steps per round, the median round counts), so a slow spell on a shared machine hits
every row alike (the loop row runs after them).

`shape` applies the nanoGPT CPU recipe's shape to a GPT config (`NANOGPT_SHAPE`: 4 layers x 128,
4 heads, block 64, batch 12 = 768 tokens/step, GELU, AdamW lr 1e-3, fp32). It is GPT's only: a
gated nGPT config runs as configured (`sets` still apply).
"""

from __future__ import annotations

import math
import os
import statistics
from typing import Callable, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax
from absl import app

from jaxgpt import cli, models
from jaxgpt.bench import args, floor_ngpt, output, timing
from jaxgpt.bench import train as train_bench
from jaxgpt.models import gpt, layers
from jaxgpt.train import setup
from jaxgpt.train import step as step_lib

NANOGPT_SHAPE = ("model.num_layers=4", "model.d_model=128", "model.num_heads=4",
                 "data.seq_len=64", "train.batch_size=12", "train.grad_accum=1",
                 "model.mlp_act=gelu", "model.compute_dtype=float32", "optimizer.name=adamw",
                 "optimizer.lr=0.001")


# ------------------------------------------------------------------------------------------
# The floor model: jaxgpt's GPT in plain jnp with 2-D weights.

MATRIX_KEYS = ("wq", "wk", "wv", "wo", "fc", "gate", "proj")  # the block matrices (Muon's)


def floor_init(cfg: gpt.GPTConfig, key) -> dict:
  d, h, n, k, f = cfg.d_model, cfg.num_heads, cfg.num_kv_heads, cfg.head_dim, cfg.mlp_dim
  keys = iter(jax.random.split(key, 8 * cfg.num_layers + 1))
  w = lambda *s: cfg.init_std * jax.random.normal(next(keys), s, jnp.float32)  # noqa: E731
  gated = cfg.mlp_act in layers.GATED_ACTIVATIONS

  def block():
    b = {"wq": w(d, h * k), "wk": w(d, n * k), "wv": w(d, n * k), "wo": w(h * k, d),
         "fc": w(d, f), "proj": w(f, d), "n1": jnp.ones(d), "n2": jnp.ones(d)}
    if gated:
      b["gate"] = w(d, f)
    if cfg.qk_norm:
      b.update(qn=jnp.ones(k), kn=jnp.ones(k))
    return b

  return {"wte": w(cfg.vocab_size, d), "blocks": [block() for _ in range(cfg.num_layers)],
          "nf": jnp.ones(d)}


def from_jaxgpt(params: dict, cfg: gpt.GPTConfig) -> dict:
  """jaxgpt GPT parameters (scanned or not) in the floor's layout: the same function."""
  per_layer = floor_ngpt.layer_params(params, cfg.num_layers)

  def block(p):
    a, m = p["attn"], p["mlp"]
    b = {**floor_ngpt.attn_matrices(a, cfg),
         "fc": m["fc"]["kernel"], "proj": m["proj"]["kernel"],
         "n1": p["attn_norm"]["scale"], "n2": p["mlp_norm"]["scale"]}
    if "gate" in m:
      b["gate"] = m["gate"]["kernel"]
    if cfg.qk_norm:
      b.update(qn=a["q_norm"]["scale"], kn=a["k_norm"]["scale"])
    return b

  return {"wte": params["embed"]["embedding"], "blocks": [block(p) for p in per_layer],
          "nf": params["final_norm"]["scale"]}


def _rms(x, scale, eps):
  return x * jax.lax.rsqrt(jnp.mean(x * x, -1, keepdims=True) + eps) * scale


def _block(cfg, sin, cos, x, p):
  b, t, _ = x.shape
  h, n, k = cfg.num_heads, cfg.num_kv_heads, cfg.head_dim
  a = _rms(x, p["n1"], cfg.norm_eps)
  q = (a @ p["wq"]).reshape(b, t, h, k)
  kk = (a @ p["wk"]).reshape(b, t, n, k)
  v = (a @ p["wv"]).reshape(b, t, n, k)
  if cfg.qk_norm:
    q, kk = _rms(q, p["qn"], cfg.norm_eps), _rms(kk, p["kn"], cfg.norm_eps)
  q, kk = layers.apply_rope(q, sin, cos), layers.apply_rope(kk, sin, cos)
  kk, v = jnp.repeat(kk, h // n, axis=2), jnp.repeat(v, h // n, axis=2)
  s = jnp.einsum("bthk,bshk->bhts", q, kk) / math.sqrt(k)
  s = jnp.where(jnp.tril(jnp.ones((t, t), bool)), s, -1e30)
  o = jnp.einsum("bhts,bshk->bthk", jax.nn.softmax(s, -1), v).reshape(b, t, h * k)
  x = x + o @ p["wo"]
  m = _rms(x, p["n2"], cfg.norm_eps)
  if cfg.mlp_act in layers.GATED_ACTIVATIONS:
    u = layers.GATED_ACTIVATIONS[cfg.mlp_act](m @ p["gate"]) * (m @ p["fc"])
  else:
    u = layers.ACTIVATIONS[cfg.mlp_act](m @ p["fc"])
  return x + u @ p["proj"]


def floor_loss(cfg, scan: bool, params, inputs, targets):
  sin, cos = layers.rope_angles(inputs.shape[1], cfg.head_dim, cfg.rope_base)
  x = params["wte"][inputs]
  if scan:
    x, _ = jax.lax.scan(lambda x, p: (_block(cfg, sin, cos, x, p), None), x, params["blocks"])
  else:
    for p in params["blocks"]:
      x = _block(cfg, sin, cos, x, p)
  logits = _rms(x, params["nf"], cfg.norm_eps) @ params["wte"].T
  return optax.softmax_cross_entropy_with_integer_labels(logits, targets).mean()


def floor_tx(opt_cfg) -> optax.GradientTransformation:
  clip = optax.clip_by_global_norm(opt_cfg.grad_clip) if opt_cfg.grad_clip else optax.identity()
  if opt_cfg.name == "adamw":
    tx = optax.adamw(opt_cfg.lr, b1=opt_cfg.b1, b2=opt_cfg.b2, eps=opt_cfg.eps,
                     weight_decay=opt_cfg.weight_decay)
  else:  # Muon on the block matrices, Adam on the table and the vectors; by name, since the
    # scan layout stacks vectors into (layers, d) and matrices into (layers, in, out)
    dims = lambda ps: jax.tree_util.tree_map_with_path(  # noqa: E731
        lambda path, x: optax.contrib.MuonDimensionNumbers(-2, -1)
        if getattr(path[-1], "key", None) in MATRIX_KEYS else None, ps)
    tx = optax.contrib.muon(opt_cfg.lr, beta=opt_cfg.momentum, ns_steps=opt_cfg.ns_steps,
                            adam_learning_rate=opt_cfg.embed_lr or opt_cfg.lr,
                            muon_weight_dimension_numbers=dims)
  return optax.chain(clip, tx)


def floor_step(cfg, opt_cfg, scan: bool):
  tx = floor_tx(opt_cfg)
  grad = jax.value_and_grad(lambda p, i, t: floor_loss(cfg, scan, p, i, t))

  def step(state, batch):
    params, opt = state
    loss, g = grad(params, batch["inputs"], batch["targets"])
    upd, opt = tx.update(g, opt, params)
    return (optax.apply_updates(params, upd), opt), loss

  def init(key, params=None):
    params = dict(floor_init(cfg, key) if params is None else params)
    if scan:
      params["blocks"] = jax.tree.map(lambda *xs: jnp.stack(xs), *params["blocks"])
    return params, tx.init(params)

  return jax.jit(step, donate_argnums=(0,)), init


# ------------------------------------------------------------------------------------------
# jaxgpt's step, jitted the same way.

def jaxgpt_step(config):
  run = setup.build(config)
  fam = models.family(config.model.name)
  fn = step_lib.make_train_step(run.model.apply, run.tx, config.train.grad_accum,
                                fam.collections, fam.rng_streams, config.train.seed)
  def step(state, batch):  # the loss alone comes back, like the floor's
    new, metrics = fn(state, batch, jnp.float32(0.5))
    return new, metrics["train_loss"]

  return jax.jit(step, donate_argnums=(0,)), run.init_state, run


class Floor(NamedTuple):
  """One family's floor: model config, weight converter, loss, step (see floor_step)."""
  config: Callable  # (config.model, vocab_size) -> the family's model config
  from_jaxgpt: Callable  # (jaxgpt params, cfg) -> floor params
  loss: Callable  # (cfg, scan, params, inputs, targets) -> mean cross entropy
  step: Callable  # (cfg, config.optimizer, scan) -> (jitted step, init(key, params))


FLOORS = {"gpt": Floor(gpt.gpt_config, from_jaxgpt, floor_loss, floor_step),
          "gated_ngpt": Floor(floor_ngpt.floor_config, floor_ngpt.from_jaxgpt,
                              floor_ngpt.floor_loss, floor_ngpt.floor_step)}


def floor_for(name: str) -> Floor:
  if name not in FLOORS:
    raise SystemExit(f"error: model.name={name!r} has no floor; families with one: "
                     f"{', '.join(FLOORS)} (e.g. configs/gpt.py:cpu, configs/gated_ngpt.py:cpu)")
  return FLOORS[name]


def _row_runner(step, state, batches: list, steps: int) -> Callable[[], jax.Array]:
  """A call that runs `steps` steps of one row from its current state and returns the last loss
  (the state carries over from call to call)."""
  holder = [state]

  def run_steps():
    state = holder[0]
    for i in range(steps):
      state, loss = step(state, batches[i % len(batches)])
    holder[0] = state
    return loss

  return run_steps


def time_rows(rows: dict, batches: list, steps: int, rounds: int) -> dict[str, float]:
  """Median seconds per step of each row (name -> (jitted step, state)) over interleaved rounds
  of `steps` steps, after one untimed round (compile and warm-up)."""
  cases = {name: _row_runner(step, state, batches, steps) for name, (step, state) in rows.items()}
  _, times = timing.interleaved(cases, rounds)
  return {name: statistics.median(ts) / steps for name, ts in times.items()}


def bench(config_arg: str, sets: Sequence[str], steps: int, rounds: int,
          loop: bool = False) -> dict:
  """Times jaxgpt's step (as configured and flipped), the floor (unrolled and scanned) and,
  with `loop`, the training loop; returns the JSON (rows with their ratio to the best floor)."""
  config = cli.load_config(config_arg, args.parse_sets(config_arg, sets))
  floor = floor_for(config.model.name)
  vocab = config.model.vocab_size or -(-(256 if config.data.tokenizer == "byte"
                                         else config.data.bpe_vocab_size) // 64) * 64
  config.model.vocab_size = vocab  # the trainer's padded tokenizer size, fixed for both
  cfg = floor.config(config.model, vocab)
  b, t = config.train.batch_size, config.data.seq_len
  r = np.random.default_rng(0)
  batches = [{k: jnp.asarray(r.integers(0, cfg.vocab_size, (b, t)), jnp.int32)
              for k in ("inputs", "targets")} for _ in range(4)]
  rows = {}
  for scan in (config.model.scan_layers, not config.model.scan_layers):
    c = config.copy_and_resolve_references()
    c.model.scan_layers = scan
    step, init_state, run = jaxgpt_step(c)
    tag = "scan" if scan else "unrolled"
    mark = "" if scan == config.model.scan_layers else ", flipped"
    rows[f"jaxgpt {tag}{mark}"] = (step, init_state())
    if scan == config.model.scan_layers:
      state0 = jax.device_get(rows[f"jaxgpt {tag}"][1])
      logits = run.model.apply({"params": state0.params}, batches[0]["inputs"])
      jaxgpt_loss = float(step_lib.token_losses(logits, batches[0]["targets"]).mean())
  # The floor starts from jaxgpt's initial weights; at those its loss must be jaxgpt's, which
  # shows it computes the same function.
  start = floor.from_jaxgpt(state0.params, cfg)
  floor_first = float(floor.loss(cfg, False, start, batches[0]["inputs"],
                                 batches[0]["targets"]))
  if abs(floor_first - jaxgpt_loss) > 1e-4 * max(1.0, abs(jaxgpt_loss)):
    raise SystemExit(f"error: the floor's initial loss {floor_first:.6f} differs from jaxgpt's "
                     f"{jaxgpt_loss:.6f}: not the same model")
  for scan in (False, True):
    step, init = floor.step(cfg, config.optimizer, scan)
    rows[f"floor {'scan' if scan else 'unrolled'}"] = (step, init(None, start))
  load_start = os.getloadavg()
  sec = time_rows(rows, batches, steps, rounds)
  if loop:  # the loop as users run it: the step above plus batches, logging, host work
    row = train_bench.bench(config_arg, steps * rounds, sets)
    sec["jaxgpt loop (as configured)"] = row["step_time_ms"] / 1e3
  best = min(v for k, v in sec.items() if k.startswith("floor"))
  table = [{"row": k, "ms_per_step": 1e3 * v, "tokens_per_s": b * t / v, "vs_floor": v / best}
           for k, v in sec.items()]
  return {"config": config_arg, "sets": list(sets), "tokens_per_step": b * t, "steps": steps,
          "initial_loss": {"jaxgpt": jaxgpt_loss, "floor": floor_first},
          "rounds": rounds, "rows": table, "backend": jax.default_backend(),
          "load_average": {"start": load_start, "end": os.getloadavg()},  # 1, 5, 15 min
          "machine": output.machine(), "jax": jax.__version__}


TABLE = output.Table(output.Column("row", "row", width=25, left=True),
                     output.Column("ms/step", "ms_per_step", ".2f", width=9),
                     output.Column("tokens/s", "tokens_per_s", ",.0f", width=11),
                     output.Column("vs floor", "vs_floor", ".2f", width=9))


def run(config_arg: str, sets: Sequence[str], steps: int, rounds: int, shape: bool = True,
        loop: bool = True, smoke: bool = False, out: str | None = None) -> dict:
  """The benchmark as scripts/bench_floor.py runs it: `smoke` sizes (configs/gpt.py:test, GELU,
  AdamW, 2 steps, 1 round, no loop) or `shape` (the nanoGPT shape; a usage error for a family
  other than GPT); prints the table, writes `out`."""
  sets = list(sets)
  if smoke:
    config_arg, steps, rounds, loop = "configs/gpt.py:test", 2, 1, False
    sets = ["model.mlp_act=gelu", "optimizer.name=adamw"] + sets
  elif shape:
    name = cli.load_config(config_arg, args.parse_sets(config_arg, sets)).model.name
    if name != "gpt":
      raise app.UsageError(f"--shape applies the nanoGPT GPT shape; {config_arg} has "
                           f"model.name={name!r}: pass --noshape to run it as configured")
    sets = list(NANOGPT_SHAPE) + sets
  result = bench(config_arg, sets, steps, rounds, loop=loop)
  output.emit(result, out, TABLE, result["rows"],
              title=f"{config_arg} {' '.join(sets)}: {result['tokens_per_step']} tokens/step")
  return result
