"""GPT: token embedding -> L pre-norm blocks (RMSNorm, RoPE attention, MLP) -> RMSNorm -> LM head.

Logits are float32 whatever the compute dtype. `scan_layers=True` stacks the blocks into one
`blocks` subtree with a leading "layers" axis (one compiled block, fast compiles at depth);
`scan_layers=False` keeps `blocks_0 .. blocks_{L-1}`. Both compute the same function.

Knobs of the speedrun / parameter-golf lineage (REFERENCE.md): parallel blocks (PaLM), MLP
activation relu2 | silu2 | gelu | swiglu, GQA / MQA (`num_kv_heads`), QK-norm, RoPE base, logit
soft-cap, tied or untied head, zero-init output projections (`init="zero_out"`) and U-net skips
(`encoder_layers` E > 0): layer i < E pushes its output, layer 2E-1-i adds `skip_weight * output`
before its block. Scanned, the layers then form up to three scans (`encoder_blocks`,
`decoder_blocks`, `blocks` for the rest): the encoder scan's stacked outputs are the skip stack,
read in reverse as the decoder scan's xs.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxgpt.models import layers

ACT_AXES = ("batch", "length", "act_embed")  # residual stream x_btd (act_embed: not fsdp)
LOGIT_AXES = ("batch", "length", "vocab")
COMPUTE_DTYPES = ("float32", "bfloat16")
ATTENTION_IMPLS = (None, "xla", "cudnn")


@dataclasses.dataclass(frozen=True)
class GPTConfig:
  vocab_size: int  # V: vocabulary size (the tokenizer's, padded)
  num_layers: int  # L: transformer blocks
  d_model: int  # D: residual stream width
  num_heads: int  # H: query heads
  num_kv_heads: int  # N: key/value heads; H % N == 0 (N == H: MHA, N == 1: MQA)
  head_dim: int  # K: per-head width (default D // H)
  mlp_dim: int  # F: MLP hidden width, int(mlp_mult * D)
  mlp_act: str = "relu2"  # one of layers.MLP_ACTS (relu2, silu2, gelu, swiglu)
  qk_norm: bool = True  # RMS-normalise q and k per head before RoPE
  rope_base: float = 10000.0  # RoPE wavelength base
  logit_softcap: float | None = None  # logits -> cap * tanh(logits / cap)
  tie_embeddings: bool = True  # LM head = embedding table transposed
  scan_layers: bool = True  # nn.scan over blocks (params get a leading "layers" axis)
  remat: bool = False  # recompute block activations in the backward pass
  compute_dtype: str = "float32"  # matmul dtype; params stay float32
  init: str = "gpt2"  # a key of layers.INIT_SCHEMES
  init_std: float = 0.02  # base std of the init scheme
  norm_eps: float = 1e-6  # RMSNorm epsilon
  attention_impl: str | None = None  # jax.nn.dot_product_attention implementation
  parallel_block: bool = False  # PaLM: x + Attn(n) + MLP(n) with one n = Norm(x)
  encoder_layers: int = 0  # E: U-net skips, layer i < E feeds layer 2E-1-i; 0 = plain decoder

  @property
  def dtype(self) -> jnp.dtype:
    return jnp.dtype(self.compute_dtype)

  @classmethod
  def from_config(cls, cfg_model: Any, vocab_size: int | None = None) -> GPTConfig:
    """Validated config from `config.model`; `vocab_size` (resolved by the trainer) wins over
    `model.vocab_size`. Errors name the key, the bad value and what is allowed."""
    m = cfg_model
    vocab = vocab_size if vocab_size is not None else m.get("vocab_size")
    for key, value in (("vocab_size", vocab), ("num_layers", m.num_layers),
                       ("d_model", m.d_model), ("num_heads", m.num_heads)):
      _check_positive_int(key, value)
    num_kv_heads = m.num_heads if m.get("num_kv_heads") is None else m.num_kv_heads
    _check_positive_int("num_kv_heads", num_kv_heads)
    if m.num_heads % num_kv_heads:
      raise ValueError(f"model.num_kv_heads={num_kv_heads} must divide model.num_heads="
                       f"{m.num_heads} (each kv head serves num_heads / num_kv_heads queries)")
    head_dim = m.get("head_dim")
    if head_dim is None:
      if m.d_model % m.num_heads:
        raise ValueError(f"model.d_model={m.d_model} must be divisible by model.num_heads="
                         f"{m.num_heads} (or set model.head_dim)")
      head_dim = m.d_model // m.num_heads
    _check_positive_int("head_dim", head_dim)
    if head_dim % 2:
      raise ValueError(f"model.head_dim={head_dim} must be even (RoPE rotates pairs)")
    _check_positive("mlp_mult", m.mlp_mult)
    mlp_dim = int(m.mlp_mult * m.d_model)
    _check_positive_int("mlp_mult * d_model", mlp_dim)
    _check_one_of("mlp_act", m.mlp_act, layers.MLP_ACTS)
    _check_positive("rope_base", m.rope_base)
    if m.get("logit_softcap") is not None:
      _check_positive("logit_softcap", m.logit_softcap)
    for key in ("qk_norm", "tie_embeddings", "scan_layers", "remat"):
      _check_bool(key, m[key])
    _check_one_of("compute_dtype", m.compute_dtype, COMPUTE_DTYPES)
    _check_one_of("init", m.init, tuple(layers.INIT_SCHEMES))
    _check_positive("init_std", m.init_std)
    norm_eps = m.get("norm_eps", 1e-6)
    _check_positive("norm_eps", norm_eps)
    attention_impl = m.get("attention_impl", None)
    _check_one_of("attention_impl", attention_impl, ATTENTION_IMPLS)
    parallel_block, encoder_layers = _check_block_knobs(m)
    return cls(vocab_size=int(vocab), num_layers=m.num_layers, d_model=m.d_model,
               num_heads=m.num_heads, num_kv_heads=num_kv_heads, head_dim=head_dim,
               mlp_dim=mlp_dim, mlp_act=m.mlp_act, qk_norm=m.qk_norm,
               rope_base=float(m.rope_base),
               logit_softcap=None if m.get("logit_softcap") is None else float(m.logit_softcap),
               tie_embeddings=m.tie_embeddings, scan_layers=m.scan_layers, remat=m.remat,
               compute_dtype=m.compute_dtype, init=m.init, init_std=float(m.init_std),
               norm_eps=float(norm_eps), attention_impl=attention_impl,
               parallel_block=parallel_block, encoder_layers=encoder_layers)


# Families built from this file's Block; others (nGPT) have their own block and refuse the
# block knobs by name instead of silently ignoring them.
BLOCK_FAMILIES = ("gpt",)


def _check_block_knobs(m: Any) -> tuple[bool, int]:
  """model.parallel_block and model.encoder_layers: values, and combinations that make sense."""
  parallel_block = m.get("parallel_block", False)
  encoder_layers = m.get("encoder_layers", 0)
  _check_bool("parallel_block", parallel_block)
  if not (isinstance(encoder_layers, int) and not isinstance(encoder_layers, bool)
          and 0 <= encoder_layers <= m.num_layers // 2):
    raise ValueError(f"model.encoder_layers={encoder_layers!r} must be an integer in [0, "
                     f"model.num_layers // 2 = {m.num_layers // 2}] (each encoder layer pairs "
                     "with one later layer; 0 = plain decoder)")
  name = m.get("name", "gpt")
  if name not in BLOCK_FAMILIES:
    for key, value, off in (("parallel_block", parallel_block, False),
                            ("encoder_layers", encoder_layers, 0)):
      if value != off:
        raise ValueError(f"model.{key}={value!r} is a GPT block knob and makes no sense with "
                         f"model.name={name!r} (its block is its own); set model.{key}={off!r} "
                         f"or model.name in {BLOCK_FAMILIES}")
  return parallel_block, encoder_layers


def _check_positive_int(key: str, value: Any) -> None:
  if not (isinstance(value, int) and not isinstance(value, bool) and value > 0):
    raise ValueError(f"model.{key}={value!r} must be a positive integer")


def _check_positive(key: str, value: Any) -> None:
  if not (isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0):
    raise ValueError(f"model.{key}={value!r} must be a number > 0")


def _check_bool(key: str, value: Any) -> None:
  if not isinstance(value, bool):
    raise ValueError(f"model.{key}={value!r} must be True or False")


def _check_one_of(key: str, value: Any, allowed: tuple) -> None:
  if value not in allowed:
    raise ValueError(f"model.{key}={value!r} is not allowed; choose one of {allowed}")


# ------------------------------------------------------------------------------------------
# Closed-form sizes (tests check them against the initialised tree).

def param_count(cfg: GPTConfig) -> int:
  """Every parameter: embedding, L blocks, final norm, untied head."""
  d, k, f = cfg.d_model, cfg.head_dim, cfg.mlp_dim
  attn = d * cfg.num_heads * k + 2 * d * cfg.num_kv_heads * k + cfg.num_heads * k * d
  mlp = (3 if cfg.mlp_act in layers.GATED_ACTIVATIONS else 2) * d * f
  norms = (1 if cfg.parallel_block else 2) * d
  block = attn + mlp + norms + (2 * k if cfg.qk_norm else 0)
  head = 0 if cfg.tie_embeddings else d * cfg.vocab_size
  skips = cfg.encoder_layers * d
  return cfg.vocab_size * d + cfg.num_layers * block + skips + d + head


def matmul_param_count(cfg: GPTConfig) -> int:
  """N for MFU: non-embedding parameters plus the LM head. Tied, the table is the head: all."""
  return param_count(cfg) - (0 if cfg.tie_embeddings else cfg.vocab_size * cfg.d_model)


def flops_per_token(cfg: GPTConfig, seq_len: int) -> float:
  """6 N + 12 L (H K) T: forward + backward matmuls plus attention scores and mixing, counted
  without causal halving (REFERENCE.md MFU). H K = d_model unless head_dim is set apart."""
  attn_width = cfg.num_heads * cfg.head_dim
  return 6.0 * matmul_param_count(cfg) + 12.0 * cfg.num_layers * attn_width * seq_len


# ------------------------------------------------------------------------------------------
# Model.

class Block(nn.Module):
  """Pre-norm residual block, sequential (x + Attn(Norm x), then + MLP(Norm x)) or parallel
  (PaLM: x + Attn(n) + MLP(n), n = Norm(x), one norm). A scan body: (carry, xs) -> (carry, ys).

  role "plain":   (x, None) -> (x, None)
  role "encoder": (x, None) -> (x, x): the output is also pushed onto the skip stack (ys).
  role "decoder": (x, skip) -> (x, None): first x += skip_weight * skip (skip_weight a per-dim
                  vector, init 1, parameter-golf's U-net skips), then the block.
  """
  cfg: GPTConfig
  role: str = "plain"

  @nn.compact
  def __call__(self, x_btd: jax.Array, skip_btd: Any = None) -> tuple[jax.Array, Any]:
    c = self.cfg
    norm = lambda name: layers.RMSNorm("embed", c.norm_eps, c.dtype, name=name)  # noqa: E731
    if self.role == "decoder":
      w_d = self.param("skip_weight", nn.with_logical_partitioning(nn.initializers.ones,
                                                                   ("embed",)),
                       (c.d_model,), jnp.float32)
      x_btd = x_btd + (w_d * skip_btd.astype(jnp.float32)).astype(x_btd.dtype)
    if c.parallel_block:
      n_btd = norm("norm")(x_btd)
      x_btd = x_btd + layers.Attention(c, name="attn")(n_btd) + layers.MLP(c, name="mlp")(n_btd)
    else:
      x_btd = x_btd + layers.Attention(c, name="attn")(norm("attn_norm")(x_btd))
      x_btd = x_btd + layers.MLP(c, name="mlp")(norm("mlp_norm")(x_btd))
    x_btd = nn.with_logical_constraint(x_btd, ACT_AXES)
    return x_btd, (x_btd if self.role == "encoder" else None)


def skip_pairs(num_layers: int, encoder_layers: int) -> list[tuple[int, int]]:
  """(encoder layer, decoder layer) pairs: layer i < E feeds layer 2E-1-i (last pushed, first
  popped). 9 layers, E = 4: (3, 4), (2, 5), (1, 6), (0, 7); layer 8 has none."""
  if not 0 <= 2 * encoder_layers <= num_layers:
    raise ValueError(f"encoder_layers={encoder_layers} needs 2 * encoder_layers <= num_layers="
                     f"{num_layers}")
  return [(encoder_layers - 1 - j, encoder_layers + j) for j in range(encoder_layers)]


def layer_groups(cfg: GPTConfig) -> list[tuple[str, str, int]]:
  """Scanned layout: (subtree name, block role, number of layers) in order. With E encoder
  layers: `encoder_blocks` (E), `decoder_blocks` (E), `blocks` (the rest); E = 0: `blocks`."""
  e, rest = cfg.encoder_layers, cfg.num_layers - 2 * cfg.encoder_layers
  groups = [("encoder_blocks", "encoder", e), ("decoder_blocks", "decoder", e),
            ("blocks", "plain", rest)]
  return [g for g in groups if g[2] > 0]


def layer_role(cfg: GPTConfig, i: int) -> str:
  e = cfg.encoder_layers
  return "encoder" if i < e else "decoder" if i < 2 * e else "plain"


def block_class(cfg: GPTConfig, block: type[nn.Module] = Block,
                length: int | None = None) -> type[nn.Module]:
  """`block` (default: the GPT Block), wrapped in remat and/or scan as the config asks (remat
  inside the scan) over `length` layers (default all). Any family whose config has remat,
  scan_layers and num_layers reuses it."""
  if cfg.remat:
    # Save nothing: the backward pass recomputes the whole block. Activation memory drops to one
    # residual stream per layer, for about one extra forward pass (~33% more FLOPs).
    # prevent_cse only matters outside a scan (XLA cannot CSE across scan iterations).
    block = nn.remat(block, policy=jax.checkpoint_policies.nothing_saveable,
                     prevent_cse=not cfg.scan_layers)
  if cfg.scan_layers:
    block = nn.scan(block, variable_axes={"params": 0}, split_rngs={"params": True},
                    length=cfg.num_layers if length is None else length,
                    metadata_params={nn.PARTITION_NAME: "layers"})
  return block


class GPT(nn.Module):
  cfg: GPTConfig

  @nn.compact
  def __call__(self, tokens_bt: jax.Array) -> jax.Array:
    c = self.cfg
    layers.check_tokens_bt(tokens_bt)
    init = layers.initializers(c)
    embed = nn.Embed(c.vocab_size, c.d_model, dtype=c.dtype, param_dtype=jnp.float32,
                     embedding_init=nn.with_logical_partitioning(init["embed"],
                                                                 ("vocab", "embed")),
                     name="embed")
    x_btd = nn.with_logical_constraint(embed(tokens_bt), ACT_AXES)

    x_btd = self._layers(x_btd)

    x_btd = layers.RMSNorm("embed", c.norm_eps, c.dtype, name="final_norm")(x_btd)
    # The head multiplies in the compute dtype but accumulates and returns float32, so the
    # softmax and the loss never see bf16-rounded logits.
    if c.tie_embeddings:
      logits_btv = jnp.einsum("btd,vd->btv", x_btd, embed.embedding.astype(c.dtype),
                              preferred_element_type=jnp.float32)
    else:
      logits_btv = layers.einsum_proj("lm_head", "btd,dv->btv", (c.d_model, c.vocab_size),
                                      ("embed", "vocab"), init["head"], c.dtype,
                                      preferred_element_type=jnp.float32)(x_btd)
    logits_btv = logits_btv.astype(jnp.float32)
    if c.logit_softcap is not None:
      logits_btv = c.logit_softcap * jnp.tanh(logits_btv / c.logit_softcap)
    return nn.with_logical_constraint(logits_btv, LOGIT_AXES)


  def _layers(self, x_btd: jax.Array) -> jax.Array:
    """The L blocks with the encoder/decoder skips: the encoder's outputs form a stack whose
    last entry feeds the first decoder layer. Scanned: one scan per layer group (the encoder
    scan's ys are the stack, the decoder scan reads it reversed as xs); unscanned: a loop."""
    c = self.cfg
    if c.scan_layers:
      stack_ebtd = None
      for name, role, n in layer_groups(c):
        block = block_class(c, length=n)(c, role=role, name=name)
        xs = stack_ebtd[::-1] if role == "decoder" else None
        x_btd, ys = block(x_btd, xs)
        if role == "encoder":
          stack_ebtd = ys
      return x_btd
    block, stack = block_class(c), []
    for i in range(c.num_layers):
      role = layer_role(c, i)
      x_btd, out = block(c, role=role, name=f"blocks_{i}")(
          x_btd, stack.pop() if role == "decoder" else None)
      if role == "encoder":
        stack.append(out)
    return x_btd


def build(cfg_model: Any, vocab_size: int | None = None) -> GPT:
  return GPT(GPTConfig.from_config(cfg_model, vocab_size))
