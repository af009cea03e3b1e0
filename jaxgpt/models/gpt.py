"""GPT: token embedding -> L pre-norm blocks (RMSNorm, RoPE attention, MLP) -> RMSNorm -> LM head.

Logits are float32 whatever the compute dtype. `scan_layers=True` stacks the blocks into one
`blocks` subtree with a leading "layers" axis (one compiled block, fast compiles at depth);
`scan_layers=False` keeps `blocks_0 .. blocks_{L-1}`. Both compute the same function.

Knobs of the speedrun / parameter-golf lineage (docs/formulas.md "Architecture knobs"):
parallel blocks (PaLM), MLP activation relu2 | silu2 | gelu | swiglu, GQA / MQA
(`num_kv_heads`), QK-norm, RoPE base, logit soft-cap, tied or untied head, zero-init output
projections (`init="zero_out"`) and U-net skips (`encoder_layers` E > 0): layer i < E pushes
its output, layer 2E-1-i adds `skip_weight * output` before its block. Scanned, the layers then
form up to three scans (`encoder_blocks`, `decoder_blocks`, `blocks` for the rest): the encoder
scan's stacked outputs are the skip stack, read in reverse as the decoder scan's xs.
`head_diversity` > 0 adds a penalty on similar heads' output-projection slices to the loss
(`sow_head_diversity`).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxgpt import registry
from jaxgpt.models import aux, dims, docmask, kvcache, layers, moe
from jaxgpt.models.dims import GPTConfig

ACT_AXES = ("batch", "length", "act_embed")  # residual stream x_btd (act_embed: not fsdp)
LOGIT_AXES = ("batch", "length", "vocab")
ROUTER_RNG = "router"  # the rng stream of an MoE's router noise (training applies only)


# ------------------------------------------------------------------------------------------
# Closed-form sizes (tests check them against the initialised tree).

def param_count(cfg: GPTConfig) -> int:
  """Every parameter: embedding, L blocks, final norm, untied head."""
  return _count(cfg, active=False)


def _count(cfg: GPTConfig, active: bool) -> int:
  """Parameters; `active`: an MoE's experts count top_k times (the ones a token runs), not E."""
  d, k, f = cfg.d_model, cfg.head_dim, cfg.mlp_dim
  attn = d * cfg.num_heads * k + 2 * d * cfg.num_kv_heads * k + cfg.num_heads * k * d
  mlp = (3 if cfg.mlp_act in layers.GATED_ACTIVATIONS else 2) * d * f
  if cfg.moe is not None:  # the router (d, E) plus E (or, active, k) experts
    e = cfg.moe.num_experts
    mlp = d * e + moe.expert_params(cfg.moe, d, f) // e * (cfg.moe.top_k if active else e)
  norms = (1 if cfg.parallel_block else 2) * d
  block = attn + mlp + norms + (2 * k if cfg.qk_norm else 0)
  head = 0 if cfg.tie_embeddings else d * cfg.vocab_size
  skips = cfg.encoder_layers * d
  return cfg.vocab_size * d + cfg.num_layers * block + skips + d + head


def matmul_param_count(cfg: GPTConfig) -> int:
  """N for MFU: non-embedding parameters plus the LM head. Tied, the table is the head: all.
  An MoE counts its active parameters: the router and top_k experts per layer."""
  return _count(cfg, active=True) - (0 if cfg.tie_embeddings else cfg.vocab_size * cfg.d_model)


def flops_per_token(cfg: GPTConfig, seq_len: int) -> float:
  """6 N + 12 L (H K) T: forward + backward matmuls plus attention scores and mixing, counted
  without causal halving (docs/formulas.md "MFU"). H K = d_model unless head_dim is set apart."""
  attn_width = cfg.num_heads * cfg.head_dim
  return 6.0 * matmul_param_count(cfg) + 12.0 * cfg.num_layers * attn_width * seq_len


# ------------------------------------------------------------------------------------------
# Head diversity (`model.head_diversity`): a loss term on the attention output projections.

HEAD_NORM_EPS = 1e-8  # u = v / sqrt(|v|^2 + eps^2): a zero slice (init="zero_out") stays finite
O_KERNEL = ("attn", "o", "kernel")  # the attention output projection's kernel, [H, K, D]


def head_cosines(kernel_lhkd: jax.Array) -> jax.Array:
  """Cosine similarity between heads, [L, H, H], from L output-projection kernels [L, H, K, D].

  Head h owns the input rows [h K, (h + 1) K) of the (H K, D) projection matrix, i.e.
  `kernel[l, h]`: its slice is flattened to a vector v_h of K D numbers and
  cos(h, g) = v_h . v_g / (|v_h| |v_g|) (with eps, see HEAD_NORM_EPS), in float32 at full
  precision whatever the compute dtype."""
  num_layers, num_heads = kernel_lhkd.shape[:2]
  v_lhx = kernel_lhkd.reshape(num_layers, num_heads, -1).astype(jnp.float32)
  u_lhx = v_lhx * jax.lax.rsqrt(jnp.sum(jnp.square(v_lhx), axis=-1, keepdims=True)
                                + HEAD_NORM_EPS ** 2)
  return jnp.einsum("lhx,lgx->lhg", u_lhx, u_lhx, precision=jax.lax.Precision.HIGHEST)


def off_diagonal_means(cos_lhh: jax.Array) -> tuple[jax.Array, jax.Array]:
  """(mean squared, mean) off-diagonal cosine: over the H (H - 1) ordered pairs h != g of each
  layer, then over layers. The first is the head-diversity penalty before its weight."""
  num_heads = cos_lhh.shape[-1]
  off_hh = 1.0 - jnp.eye(num_heads, dtype=jnp.float32)
  pairs = num_heads * (num_heads - 1)
  sq_l = jnp.sum(jnp.square(cos_lhh) * off_hh, axis=(-2, -1)) / pairs
  mean_l = jnp.sum(cos_lhh * off_hh, axis=(-2, -1)) / pairs
  return jnp.mean(sq_l), jnp.mean(mean_l)


def attention_out_kernels(params: Any, num_heads: int) -> jax.Array:
  """Every layer's attention output-projection kernel, stacked [L, H, K, D]: `blocks_i/attn/o`
  unscanned, the stacked `blocks` (and `encoder_blocks`, `decoder_blocks`) scanned."""
  found = [leaf for path, leaf in jax.tree_util.tree_flatten_with_path(params)[0]
           if tuple(getattr(k, "key", None) for k in path[-3:]) == O_KERNEL]
  return jnp.concatenate([k.reshape(-1, num_heads, *k.shape[-2:]) for k in found])


def sow_head_diversity(module: nn.Module, weight: float, num_heads: int) -> None:
  """Adds weight * (mean over layers of the mean squared off-diagonal cosine between heads) to
  the loss (`loss/head_diversity`) and logs the unweighted penalty (`metric/head_cos_sq`) and
  the mean off-diagonal cosine (`metric/head_cos`); `module` is the GPT, after its layers.

  The diversity penalty of parameter-golf PR #1434 (HEAD_DIVERSITY), done as it meant: that
  script looked for `block.attn.c_proj`, an attribute its attention does not have (it names the
  projection `proj`), so its penalty was never added (a no-op; its logged "slight help" is
  noise). It also split the projection's OUTPUT (row) axis into 8 chunks, which are not heads:
  heads are concatenated along the INPUT axis, as here. It took the first block only and
  averaged over all H^2 entries of (S - I)^2, diagonal included: (H - 1) / H times the mean over
  the H (H - 1) off-diagonal pairs used here."""
  kernels = attention_out_kernels(nn.unbox(module.variables["params"]), num_heads)
  cos_sq, cos = off_diagonal_means(head_cosines(kernels))
  if weight > 0:  # weight 0 (model.log_head_cos): the metrics alone
    aux.add_loss(module, "head_diversity", weight * cos_sq)
  aux.add_metric(module, "head_cos_sq", cos_sq)
  aux.add_metric(module, "head_cos", cos)


# ------------------------------------------------------------------------------------------
# Model.

class Block(nn.Module):
  """Pre-norm residual block, sequential (x + Attn(Norm x), then + MLP(Norm x)) or parallel
  (PaLM: x + Attn(n) + MLP(n), n = Norm(x), one norm). A scan body: (carry, xs, docs) ->
  (carry, ys), `docs` (the window's `docmask.Documents`, a cached generation's
  `kvcache.Decode`, or None) broadcast to every layer.

  role "plain":   (x, None) -> (x, None)
  role "encoder": (x, None) -> (x, x): the output is also pushed onto the skip stack (ys).
  role "decoder": (x, skip) -> (x, None): first x += skip_weight * skip (skip_weight a per-dim
                  vector, init 1, parameter-golf's U-net skips), then the block.
  """
  cfg: GPTConfig
  role: str = "plain"

  @nn.compact
  def __call__(self, x_btd: jax.Array, skip_btd: Any = None,
               docs: docmask.Documents | kvcache.Decode | None = None
               ) -> tuple[jax.Array, Any]:
    c = self.cfg
    norm = lambda name: layers.RMSNorm("embed", c.norm_eps, c.dtype, name=name)  # noqa: E731
    if self.role == "decoder":
      w_d = self.param("skip_weight", nn.with_logical_partitioning(nn.initializers.ones,
                                                                   ("embed",)),
                       (c.d_model,), jnp.float32)
      x_btd = x_btd + (w_d * skip_btd.astype(jnp.float32)).astype(x_btd.dtype)
    ffn = layers.MLP if c.moe is None else moe.MoE
    if c.parallel_block:
      n_btd = norm("norm")(x_btd)
      x_btd = (x_btd + layers.Attention(c, name="attn")(n_btd, docs)
               + ffn(c, name="mlp")(n_btd))
    else:
      x_btd = x_btd + layers.Attention(c, name="attn")(norm("attn_norm")(x_btd), docs)
      x_btd = x_btd + ffn(c, name="mlp")(norm("mlp_norm")(x_btd))
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
  scan_layers and num_layers reuses it; its block is called as (carry, xs, docs), the scan
  slicing xs by layer and giving every layer the same docs."""
  if cfg.remat:
    # Save nothing: the backward pass recomputes the whole block. Activation memory drops to one
    # residual stream per layer, for about one extra forward pass (~33% more FLOPs).
    # prevent_cse only matters outside a scan (XLA cannot CSE across scan iterations).
    block = nn.remat(block, policy=jax.checkpoint_policies.nothing_saveable,
                     prevent_cse=not cfg.scan_layers)
  if cfg.scan_layers:
    # Sown loss terms and metrics (models/aux.py) and a generation's key/value cache
    # (models/kvcache.py) stack over layers like the params; each layer draws its own router
    # noise.
    block = nn.scan(block, variable_axes={"params": 0, aux.LOSSES: 0, aux.METRICS: 0,
                                          kvcache.CACHE: 0},
                    split_rngs={"params": True, ROUTER_RNG: True},
                    in_axes=(0, nn.broadcast),
                    length=cfg.num_layers if length is None else length,
                    metadata_params={nn.PARTITION_NAME: "layers"})
  return block


class GPT(nn.Module):
  """`apply({"params": p}, tokens_bt)`: float32 logits [B, T, V]. Cached generation
  (`decode_model`) passes a `kvcache.Decode` as `decode` and makes `cache` mutable: the tokens
  are then the next ones after those already in the cache."""
  cfg: GPTConfig

  @nn.compact
  def __call__(self, tokens_bt: jax.Array, decode: kvcache.Decode | None = None) -> jax.Array:
    c = self.cfg
    layers.check_tokens_bt(tokens_bt)
    init = layers.initializers(c)
    embed = nn.Embed(c.vocab_size, c.d_model, dtype=c.dtype, param_dtype=jnp.float32,
                     embedding_init=nn.with_logical_partitioning(init["embed"],
                                                                 ("vocab", "embed")),
                     name="embed")
    x_btd = nn.with_logical_constraint(embed(tokens_bt), ACT_AXES)

    x_btd = self._layers(x_btd, window_documents(c, tokens_bt) if decode is None else decode)
    if c.head_diversity > 0 or c.log_head_cos:  # (a no-op without the collections: evaluation)
      sow_head_diversity(self, c.head_diversity, c.num_heads)

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


  def _layers(self, x_btd: jax.Array, docs: docmask.Documents | kvcache.Decode | None
              ) -> jax.Array:
    """The L blocks with the encoder/decoder skips: the encoder's outputs form a stack whose
    last entry feeds the first decoder layer. Scanned: one scan per layer group (the encoder
    scan's ys are the stack, the decoder scan reads it reversed as xs); unscanned: a loop.
    `docs` goes to every block's attention."""
    c = self.cfg
    if c.scan_layers:
      stack_ebtd = None
      for name, role, n in layer_groups(c):
        block = block_class(c, length=n)(c, role=role, name=name)
        xs = stack_ebtd[::-1] if role == "decoder" else None
        x_btd, ys = block(x_btd, xs, docs)
        if role == "encoder":
          stack_ebtd = ys
      return x_btd
    block, stack = block_class(c), []
    for i in range(c.num_layers):
      role = layer_role(c, i)
      x_btd, out = block(c, role=role, name=f"blocks_{i}")(
          x_btd, stack.pop() if role == "decoder" else None, docs)
      if role == "encoder":
        stack.append(out)
    return x_btd


def window_documents(cfg: Any, tokens_bt: jax.Array) -> docmask.Documents | None:
  """The packed window's documents when the config masks them (`document_mask`), else None."""
  if not cfg.document_mask:
    return None
  return docmask.documents(tokens_bt, cfg.bos_id, cfg.document_positions)


def decode_model(model: nn.Module) -> GPT | None:
  """The module that generates from `model`'s parameters with a key/value cache
  (`kvcache.Decode`), or None where there is none: families other than gpt and moe (nGPT,
  gated nGPT and Titans recompute the window), and document-masked models (their masks and
  positions follow boundary tokens, which the cache does not track).

  An MoE with capacity dispatch decodes with dense dispatch: a capacity buffer is filled over
  a whole window in token order, so whether a token is dropped depends on the window's length
  and on the tokens before it, which one token at a time cannot reproduce. Dense is the
  dropless function (ragged computes it too and is kept). Remat is off (no backward pass):
  the parameter tree is the same."""
  if type(model) is not GPT or model.cfg.document_mask:  # Titans subclasses GPT: not it
    return None
  cfg = dataclasses.replace(model.cfg, remat=False)
  if cfg.moe is not None and cfg.moe.dispatch == "capacity":
    cfg = dataclasses.replace(cfg, moe=dataclasses.replace(cfg.moe, dispatch="dense"))
  return GPT(cfg)


def gpt_config(cfg_model: Any, vocab_size: int | None = None,
               bos_id: int | None = None) -> GPTConfig:
  """The validated GPTConfig of `config.model` (`bos_id`: `data.bos_id`, for document
  masking); `model.name = "moe"` adds its MoEConfig."""
  cfg = GPTConfig.from_config(cfg_model, vocab_size, bos_id)
  if cfg_model.name == "moe":
    cfg = dataclasses.replace(cfg, moe=moe.MoEConfig.from_config(cfg_model.moe, cfg.mlp_act))
  return cfg


def build(cfg_model: Any, vocab_size: int | None = None, bos_id: int | None = None) -> GPT:
  cfg = gpt_config(cfg_model, vocab_size, bos_id)
  dims.check_bos_id(cfg.document_mask, bos_id, cfg.vocab_size)
  return GPT(cfg)


def model_flops_per_token(cfg_model: Any, vocab_size: int | None, seq_len: int) -> float:
  return flops_per_token(gpt_config(cfg_model, vocab_size), seq_len)


def check(config: Any) -> None:
  bos_id = config.data.get("bos_id")
  cfg = gpt_config(config.model, config.model.get("vocab_size") or 64, bos_id)
  dims.check_bos_id(cfg.document_mask and not dims.data_provides_bos(config.data), bos_id)


# The GPT family sows only `model.head_diversity`'s term and metrics; with the weight 0 nothing is
# sown and the training loss is the cross entropy + 0, bit for bit the cross entropy.
registry.MODELS.register("gpt", registry.ModelFamily(
    build=build, check=check, flops_per_token=model_flops_per_token,
    collections=(aux.LOSSES, aux.METRICS)))
# The MoE family: these blocks with `moe.MoE` as the MLP. Its router's load-balance (and z) loss
# and load metrics are sown (models/aux.py); its router noise draws from the ROUTER_RNG stream.
registry.MODELS.register("moe", registry.ModelFamily(
    build=build, check=check, flops_per_token=model_flops_per_token,
    collections=(aux.LOSSES, aux.METRICS), rng_streams=(ROUTER_RNG,)))
