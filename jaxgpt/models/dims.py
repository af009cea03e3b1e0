"""The transformer dimensions and knobs shared by the model families, validated from config.

`GPTConfig.from_config(config.model, vocab_size)` checks every GPT key once and names the bad
key and value; the nGPT family validates its shared shape keys through it. The MLP activations
and the names of the init schemes live here (`layers` implements the schemes), so that `layers`,
`gpt`, `moe` and `ngpt` all import this module and nothing imports back.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, Callable

import jax
import jax.numpy as jnp

from jaxgpt import checks
from jaxgpt.errors import ConfigError

ACTIVATIONS: dict[str, Callable[[jax.Array], jax.Array]] = {
    "relu2": lambda x: jnp.square(jax.nn.relu(x)),  # modded-nanogpt's ReLU^2
    "silu2": lambda x: jnp.square(jax.nn.silu(x)),  # SiLU^2 (parameter-golf lineage)
    "gelu": functools.partial(jax.nn.gelu, approximate=True),  # GPT-2's tanh approximation
    "silu": jax.nn.silu,  # plain SiLU, ungated (the blueberry MoE's experts)
}
# Gated activations: the MLP gets a second input kernel `gate` (embed -> mlp) and computes
# act(gate(x)) * fc(x). SwiGLU (Shazeer 2020): SiLU on the gate.
GATED_ACTIVATIONS: dict[str, Callable[[jax.Array], jax.Array]] = {
    "swiglu": jax.nn.silu,
}
MLP_ACTS = tuple(ACTIVATIONS) + tuple(GATED_ACTIVATIONS)  # `model.mlp_act`, `model.moe.act`
# Init scheme name -> scheme; `layers` fills it with its schemes (one table, read here).
INIT_SCHEMES: dict[str, Any] = {}
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
  mlp_act: str = "relu2"  # one of MLP_ACTS (relu2, silu2, gelu, silu, swiglu)
  qk_norm: bool = True  # RMS-normalise q and k per head before RoPE
  rope_base: float = 10000.0  # RoPE wavelength base
  logit_softcap: float | None = None  # logits -> cap * tanh(logits / cap)
  tie_embeddings: bool = True  # LM head = embedding table transposed
  scan_layers: bool = True  # nn.scan over blocks (params get a leading "layers" axis)
  remat: bool = False  # recompute block activations in the backward pass
  compute_dtype: str = "float32"  # matmul dtype; params stay float32
  init: str = "gpt2"  # one of INIT_SCHEMES
  init_std: float = 0.02  # base std of the init scheme
  norm_eps: float = 1e-6  # RMSNorm epsilon
  attention_impl: str | None = None  # jax.nn.dot_product_attention implementation
  parallel_block: bool = False  # PaLM: x + Attn(n) + MLP(n) with one n = Norm(x)
  encoder_layers: int = 0  # E: U-net skips, layer i < E feeds layer 2E-1-i; 0 = plain decoder
  moe: Any = None  # moe.MoEConfig: every block's MLP is a routed mixture of experts
  document_mask: bool = False  # attention stays inside each document of a packed window
  document_positions: bool = False  # RoPE positions restart at each document (needs the mask)
  bos_id: int | None = None  # the boundary token starting each document (document_mask only)
  head_diversity: float = 0.0  # weight of the heads' output-projection cosine penalty; 0 = off
  log_head_cos: bool = False  # log the heads' cosine (metric/head_cos) whatever the weight

  @property
  def dtype(self) -> jnp.dtype:
    return jnp.dtype(self.compute_dtype)

  @classmethod
  def from_config(cls, cfg_model: Any, vocab_size: int | None = None,
                  bos_id: int | None = None) -> GPTConfig:
    """Validated config from `config.model`; `vocab_size` (resolved by the trainer) wins over
    `model.vocab_size`; `bos_id` is `data.bos_id` (document masking). Errors name the key, the
    bad value and what is allowed."""
    m = cfg_model
    vocab = vocab_size if vocab_size is not None else m.get("vocab_size")
    for key, value in (("vocab_size", vocab), ("num_layers", m.num_layers),
                       ("d_model", m.d_model), ("num_heads", m.num_heads)):
      checks.integer(f"model.{key}", value, 1)
    num_kv_heads = m.num_heads if m.get("num_kv_heads") is None else m.num_kv_heads
    checks.integer("model.num_kv_heads", num_kv_heads, 1)
    if m.num_heads % num_kv_heads:
      raise ConfigError(f"model.num_kv_heads={num_kv_heads} must divide model.num_heads="
                       f"{m.num_heads} (each kv head serves num_heads / num_kv_heads queries)")
    head_dim = m.get("head_dim")
    if head_dim is None:
      if m.d_model % m.num_heads:
        raise ConfigError(f"model.d_model={m.d_model} must be divisible by model.num_heads="
                         f"{m.num_heads} (or set model.head_dim)")
      head_dim = m.d_model // m.num_heads
    checks.integer("model.head_dim", head_dim, 1)
    if head_dim % 2:
      raise ConfigError(f"model.head_dim={head_dim} must be even (RoPE rotates pairs)")
    checks.positive("model.mlp_mult", m.mlp_mult)
    mlp_dim = int(m.mlp_mult * m.d_model)
    checks.integer("model.mlp_mult * d_model", mlp_dim, 1)
    checks.one_of("model.mlp_act", m.mlp_act, MLP_ACTS)
    checks.positive("model.rope_base", m.rope_base)
    checks.positive("model.logit_softcap", m.get("logit_softcap"), allow_none=True)
    for key in ("qk_norm", "tie_embeddings", "scan_layers", "remat"):
      checks.boolean(f"model.{key}", m[key])
    checks.one_of("model.compute_dtype", m.compute_dtype, COMPUTE_DTYPES)
    checks.one_of("model.init", m.init, INIT_SCHEMES)
    checks.positive("model.init_std", m.init_std)
    norm_eps = checks.positive("model.norm_eps", m.get("norm_eps", 1e-6))
    attention_impl = checks.one_of("model.attention_impl", m.get("attention_impl", None),
                                   ATTENTION_IMPLS)
    parallel_block, encoder_layers = check_block_knobs(m)
    head_diversity = check_head_diversity(m)
    document_mask, document_positions = document_flags(m)
    return cls(vocab_size=int(vocab), num_layers=m.num_layers, d_model=m.d_model,
               num_heads=m.num_heads, num_kv_heads=num_kv_heads, head_dim=head_dim,
               mlp_dim=mlp_dim, mlp_act=m.mlp_act, qk_norm=m.qk_norm,
               rope_base=float(m.rope_base),
               logit_softcap=None if m.get("logit_softcap") is None else float(m.logit_softcap),
               tie_embeddings=m.tie_embeddings, scan_layers=m.scan_layers, remat=m.remat,
               compute_dtype=m.compute_dtype, init=m.init, init_std=float(m.init_std),
               norm_eps=float(norm_eps), attention_impl=attention_impl,
               parallel_block=parallel_block, encoder_layers=encoder_layers,
               document_mask=document_mask, document_positions=document_positions,
               bos_id=bos_id if document_mask else None,
               head_diversity=float(head_diversity),
               log_head_cos=checks.boolean("model.log_head_cos", m.get("log_head_cos", False)))


def document_flags(m: Any) -> tuple[bool, bool]:
  """model.document_mask and model.document_positions (restarting positions needs the mask).
  The boundary token `data.bos_id` is checked apart (`check_bos_id`): FLOP counts and
  parameter shapes do not need it."""
  mask = checks.boolean("model.document_mask", m.get("document_mask", False))
  restart = checks.boolean("model.document_positions", m.get("document_positions", False))
  if restart and not mask:
    raise ConfigError("model.document_positions=True needs model.document_mask=True (positions "
                      "restart at the documents the mask keeps apart)")
  return mask, restart


def data_provides_bos(data_cfg: Any) -> bool:
  """Whether the data will name its own boundary token once prepared (a `document_separator`
  of "bos", a folder of `python -m jaxgpt.data.prepare`): then `data.bos_id` may stay unset and
  the trainer resolves it (`jaxgpt.data.bos_id`)."""
  return (data_cfg.get("document_separator") == "bos"
          or data_cfg.get("prepared_dir") is not None)


def check_bos_id(document_mask: bool, bos_id: Any, vocab_size: int | None = None) -> None:
  """data.bos_id: None or an integer >= 0; required by document_mask, and then < vocab_size
  when that is given (an id outside the vocabulary never occurs: nothing would be masked)."""
  checks.integer("data.bos_id", bos_id, 0, allow_none=True)
  if not document_mask:
    return
  if bos_id is None:
    raise ConfigError("model.document_mask=True needs data.bos_id, the id of the token that "
                      "starts each document (e.g. 50256 in GPT-2 FineWeb shards); got None")
  if vocab_size is not None and bos_id >= vocab_size:
    raise ConfigError(f"data.bos_id={bos_id} must be < the model's vocabulary size "
                      f"{vocab_size}")


# Families built from this file's Block; others (nGPT) have their own block and refuse the
# block knobs by name instead of silently ignoring them.
BLOCK_FAMILIES = ("gpt", "moe")


def check_block_knobs(m: Any) -> tuple[bool, int]:
  """model.parallel_block and model.encoder_layers: values, and combinations that make sense."""
  parallel_block = m.get("parallel_block", False)
  encoder_layers = m.get("encoder_layers", 0)
  checks.boolean("model.parallel_block", parallel_block)
  if not (checks.is_integer(encoder_layers) and 0 <= encoder_layers <= m.num_layers // 2):
    raise ConfigError(f"model.encoder_layers={encoder_layers!r} must be an integer in [0, "
                     f"model.num_layers // 2 = {m.num_layers // 2}] (each encoder layer pairs "
                     "with one later layer; 0 = plain decoder)")
  name = m.get("name", "gpt")
  if name not in BLOCK_FAMILIES:
    for key, value, off in (("parallel_block", parallel_block, False),
                            ("encoder_layers", encoder_layers, 0)):
      if value != off:
        raise ConfigError(f"model.{key}={value!r} is a GPT block knob and makes no sense with "
                         f"model.name={name!r} (its block is its own); set model.{key}={off!r} "
                         f"or model.name in {BLOCK_FAMILIES}")
  return parallel_block, encoder_layers


def check_head_diversity(m: Any) -> float:
  """model.head_diversity: a weight >= 0; nonzero needs a family built from the GPT attention
  (`BLOCK_FAMILIES`) and at least two query heads (a cosine between heads needs two)."""
  weight = checks.positive("model.head_diversity", m.get("head_diversity", 0.0), allow_zero=True)
  if weight == 0 and not m.get("log_head_cos", False):
    return weight
  # the knob that asks for the heads' cosine: the penalty, or logging it alone
  knob, value, off = (("model.head_diversity", weight, "0.0") if weight else
                      ("model.log_head_cos", True, "False"))
  name = m.get("name", "gpt")
  if name not in BLOCK_FAMILIES:
    raise ConfigError(f"{knob}={value!r} reads the GPT attention's output projection and is "
                      f"not implemented for model.name={name!r}; set {knob}={off} or "
                      f"model.name in {BLOCK_FAMILIES}")
  if m.num_heads < 2:
    raise ConfigError(f"{knob}={value!r} needs model.num_heads >= 2 (a cosine between heads); "
                      f"got model.num_heads={m.num_heads}")
  return weight
