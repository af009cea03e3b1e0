"""Everything a run needs before its first step: data spec, model, optimizer, mesh, shardings.

Shared by training, evaluation and sampling, so the three always see the same model and mesh.
"""

from __future__ import annotations

import dataclasses
import sys
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxgpt import data, models
from jaxgpt.data import mixture as mixture_lib
from jaxgpt.errors import ConfigError
from jaxgpt.hf import init as hf_init
from jaxgpt.optim import build_optimizer
from jaxgpt.parallel import mesh as mesh_lib
from jaxgpt.parallel import rules as rules_lib
from jaxgpt.train import state as state_lib


def padded_vocab(n: int, multiple: int = 64) -> int:
  return -(-n // multiple) * multiple


@dataclasses.dataclass
class Run:
  config: Any
  spec: Any  # data.DataSpec
  vocab_size: int
  model: nn.Module
  tx: optax.GradientTransformationExtraArgs
  mesh: jax.sharding.Mesh
  state_shardings: Any
  abstract_state: Any  # ShapeDtypeStructs with shardings: the restore target
  boxed_params: Any  # abstract params with logical axis names

  def init_state(self) -> state_lib.TrainState:
    """Initial state, created directly in its sharded layout: fresh parameters, or those of
    `train.init_from` (with a fresh optimizer state)."""
    folder = self.config.train.get("init_from")
    if folder is not None:
      params = hf_init.load_params(folder, self.config.model, self.vocab_size,
                                   self.abstract_state.params)
      if jax.process_index() == 0:
        print(f"[jaxgpt] starting from the weights of train.init_from={folder}",
              file=sys.stderr, flush=True)
      with self.context():
        init = jax.jit(self._init_from_params, in_shardings=(self.state_shardings.params,),
                       out_shardings=self.state_shardings)
        return init(params)
    rng = jax.random.PRNGKey(self.config.train.seed)
    with self.context():
      init = jax.jit(self._init_fn, out_shardings=self.state_shardings)
      return init(rng)

  def _init_fn(self, rng):
    return state_lib.create(self.model, self.tx, rng, self.dummy_tokens())[0]

  def _init_from_params(self, params):
    return state_lib.TrainState(step=jnp.zeros((), jnp.int32), params=params,
                                opt_state=self.tx.init(params))

  def dummy_tokens(self) -> jnp.ndarray:
    return jnp.zeros((1, self.config.data.seq_len), jnp.int32)

  def context(self):
    """Mesh + logical-axis rules, active while tracing so activation constraints resolve."""
    return _Context(self.mesh)


class _Context:
  def __init__(self, mesh):
    self.mesh = mesh
    self._stack = []

  def __enter__(self):
    for cm in (jax.set_mesh(self.mesh), nn.logical_axis_rules(rules_lib.LOGICAL_RULES)):
      cm.__enter__()
      self._stack.append(cm)
    return self

  def __exit__(self, *exc):
    while self._stack:
      self._stack.pop().__exit__(*exc)
    return False


def check_batch_layout(config, mesh: jax.sharding.Mesh) -> None:
  """Batch sizes must split evenly over processes, data x fsdp devices and micro-batches."""
  t = config.train
  shards = mesh.shape["data"] * mesh.shape["fsdp"]
  micro = t.batch_size // t.grad_accum
  if micro % shards:
    raise ConfigError(
        f"train.batch_size={t.batch_size} / train.grad_accum={t.grad_accum} = {micro} sequences "
        f"per micro-batch must be divisible by mesh data x fsdp = {shards}")
  if shards % jax.process_count():  # each process feeds its own rows to its own devices
    raise ConfigError(f"mesh data x fsdp = {shards} must be a multiple of the number of "
                     f"processes ({jax.process_count()}): every process reads its own rows, "
                     "so mesh.tensor must stay within a process (for tensor parallelism run "
                     "one process per host, not one per device)")
  if t.batch_size % jax.process_count():
    raise ConfigError(f"train.batch_size={t.batch_size} must be divisible by the number of "
                     f"processes ({jax.process_count()})")
  eval_bs = eval_batch_size(config)
  if eval_bs % shards or eval_bs % jax.process_count():
    raise ConfigError(f"train.eval_batch_size={eval_bs} must be divisible by mesh data x fsdp "
                     f"= {shards} and by the number of processes ({jax.process_count()})")


def eval_batch_size(config) -> int:
  t = config.train
  return t.eval_batch_size or max(1, t.batch_size // t.grad_accum)


def build(config, devices=None) -> Run:
  """The run's pieces. With `train.init_from`, the folder's model keys and tokenizer are first
  built into `config` (in place: config.json records them; `jaxgpt.hf.init.apply`)."""
  hf_init.apply(config)
  spec = mixture_lib.training_spec(data.prepare(config.data), config.data)  # align_to_bos
  if config.model.vocab_size is not None:
    vocab_size = int(config.model.vocab_size)
    if spec.vocab_size is not None and spec.vocab_size > vocab_size:
      raise ConfigError(f"model.vocab_size={vocab_size} is smaller than the tokenizer's "
                       f"vocabulary ({spec.vocab_size})")
  else:
    vocab_size = padded_vocab(spec.vocab_size)
  if spec.vocab_size is None:  # raw shards: no tokenizer vouches for the ids, so check them
    data.check_vocab(spec.train_files + spec.val_files, vocab_size)
  model = models.build_model(config.model, vocab_size, data.bos_id(config.data, spec))
  tx = build_optimizer(config.optimizer, projection=models.projection(config.model))
  mesh = mesh_lib.make_mesh(config.mesh.to_dict(), devices)
  check_batch_layout(config, mesh)

  tokens = jnp.zeros((1, config.data.seq_len), jnp.int32)
  with jax.set_mesh(mesh), nn.logical_axis_rules(rules_lib.LOGICAL_RULES):
    abstract, boxed = jax.eval_shape(
        lambda rng: state_lib.create(model, tx, rng, tokens), jax.random.PRNGKey(0))
  param_sh = rules_lib.param_shardings(boxed, mesh)
  repl = rules_lib.replicated(mesh)
  opt_sh = rules_lib.state_shardings_like_params(abstract.opt_state, abstract.params, param_sh,
                                                 mesh)
  shardings = state_lib.TrainState(step=repl, params=param_sh, opt_state=opt_sh)
  abstract = jax.tree.map(lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s),
                          abstract, shardings)
  return Run(config=config, spec=spec, vocab_size=vocab_size, model=model, tx=tx, mesh=mesh,
             state_shardings=shardings, abstract_state=abstract, boxed_params=boxed)


def token_bytes_array(spec, vocab_size: int) -> np.ndarray | None:
  """Per-token byte lengths padded to the model's vocabulary (padding ids count 0 bytes)."""
  tb = getattr(spec, "token_bytes", None)
  if tb is None:
    return None
  out = np.zeros((vocab_size,), np.int32)
  out[: len(tb)] = tb
  return out
