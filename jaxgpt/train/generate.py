"""Generation from a model's parameters: the sampling rule (temperature, top-k, top-p), prompts
of different lengths in one batch, and two generation loops, each one jitted function with
fixed shapes (a `lax.scan` over the new tokens):

- cached (`make_cached`; the gpt and moe families, `gpt.decode_model`): the prompts, left
  padded to one length P, fill a key/value cache of `cache_len` slots per layer in one forward
  pass (the prefill), then each step runs one token per row (`jaxgpt/models/kvcache.py`). Each
  row's RoPE positions start at 0 at its first real token and its padding is masked out of
  attention, so a row decodes as it would alone. Prompt + new tokens must fit the cache.
- recomputed (`make_recompute`; every family): a window of `window_len` tokens per row, the
  prompt at its start (right padded: causal attention never reads what lies after a token), the
  whole window run again for every token and the logits read at each row's last token; a row
  whose window is full slides left by one (older tokens fall out).

Both draw token i of every row with the key `fold_in(key, i)`, so with equal logits they
sample the same tokens. `generate` picks the loop; `--mode sample` calls it
(`jaxgpt/train/inference.py`).
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from jaxgpt import checks
from jaxgpt.errors import ConfigError
from jaxgpt.models import gpt, kvcache

PAD_ID = 0  # the token id of padding slots (masked, or never read)


# ------------------------------------------------------------------------------------------
# Sampling: one pure function of the logits and a key.

def filter_logits(logits_bv: jax.Array, temperature: float, top_k: int | None = None,
                  top_p: float = 1.0) -> jax.Array:
  """float32 logits / temperature with the tokens outside the kept set at -inf.

  Kept: the `top_k` largest logits (None or 0: all), then, of the distribution renormalised
  over those, the smallest set of most probable tokens whose probability reaches `top_p`
  (nucleus sampling; 1.0: all), i.e. a token is kept iff the mass of the tokens before it in
  descending order is < top_p, so the most probable token always is. Tokens tied with the last
  kept one are kept too."""
  logits_bv = logits_bv.astype(jnp.float32) / temperature
  vocab = logits_bv.shape[-1]
  if top_k and top_k < vocab:
    kth_b1 = jax.lax.top_k(logits_bv, top_k)[0][:, -1:]
    logits_bv = jnp.where(logits_bv < kth_b1, -jnp.inf, logits_bv)
  if top_p < 1.0:
    sorted_bv = -jnp.sort(-logits_bv, axis=-1)  # descending; removed tokens (-inf) last
    probs_bv = jax.nn.softmax(sorted_bv, axis=-1)
    before_bv = jnp.cumsum(probs_bv, axis=-1) - probs_bv  # mass strictly before each token
    num_kept_b1 = jnp.sum(before_bv < top_p, axis=-1, keepdims=True)  # >= 1
    last_b1 = jnp.take_along_axis(sorted_bv, num_kept_b1 - 1, axis=-1)
    logits_bv = jnp.where(logits_bv < last_b1, -jnp.inf, logits_bv)
  return logits_bv


def sample_logits(logits_bv: jax.Array, key: jax.Array, temperature: float,
                  top_k: int | None = None, top_p: float = 1.0) -> jax.Array:
  """int32 [B]: the next token of each row. temperature <= 0 is greedy (argmax; top_k and
  top_p change nothing then); else a draw from softmax(`filter_logits`)."""
  if temperature <= 0:
    return jnp.argmax(logits_bv, axis=-1).astype(jnp.int32)
  filtered_bv = filter_logits(logits_bv, temperature, top_k, top_p)
  return jax.random.categorical(key, filtered_bv, axis=-1).astype(jnp.int32)


def check_sampling(temperature: Any, top_k: Any, top_p: Any) -> None:
  """sample.temperature >= 0, sample.top_k an integer >= 0 or None (0, None: off),
  sample.top_p in (0, 1] (1: off)."""
  checks.number("sample.temperature", temperature, 0.0)
  checks.integer("sample.top_k", top_k, 0, allow_none=True)
  checks.number("sample.top_p", top_p, 0.0, 1.0, low_open=True)


def check_sample(s: Any) -> None:
  """Every `config.sample` key (`--mode sample` checks them before loading anything)."""
  check_sampling(s.temperature, s.top_k, s.top_p)
  checks.integer("sample.max_new_tokens", s.max_new_tokens, 1, allow_none=True)
  checks.integer("sample.num_samples", s.num_samples, 1)
  checks.integer("sample.seed", s.seed, 0)
  checks.boolean("sample.kv_cache", s.kv_cache)
  if not isinstance(s.prompt, str):
    raise ConfigError(f"sample.prompt={s.prompt!r} must be a string")
  if not (isinstance(s.prompts, (tuple, list)) and all(isinstance(p, str) for p in s.prompts)):
    raise ConfigError(f"sample.prompts={s.prompts!r} must be a tuple of strings (empty: "
                      "sample.prompt)")


# ------------------------------------------------------------------------------------------
# Prompts: batches of token lists of different lengths.

def as_prompts(prompts: Sequence[Sequence[int]]) -> list[np.ndarray]:
  """int32 arrays, each at least one token (a row needs a last token to continue from)."""
  out = [np.asarray(p, np.int32).reshape(-1) for p in prompts]
  if not out:
    raise ConfigError("sample.prompts=() gives no prompt to continue; give at least one")
  for i, p in enumerate(out):
    if p.size == 0:
      raise ConfigError(f"sample.prompt #{i} encodes to no tokens; give at least one character")
  return out


def left_pad(prompts: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
  """(tokens_bp, pad_b): every prompt right-aligned in P = the longest length, PAD_ID before
  it; pad_b = P - its length (the slot of its first real token)."""
  width = max(len(p) for p in prompts)
  tokens_bp = np.full((len(prompts), width), PAD_ID, np.int32)
  for b, p in enumerate(prompts):
    tokens_bp[b, width - len(p):] = p
  return tokens_bp, np.asarray([width - len(p) for p in prompts], np.int32)


def right_pad(prompts: Sequence[np.ndarray], width: int) -> tuple[np.ndarray, np.ndarray]:
  """(window_bs, len_b): each prompt's last `width` tokens at the start of a window of `width`
  slots, PAD_ID after; len_b = the tokens each row holds."""
  window_bs = np.full((len(prompts), width), PAD_ID, np.int32)
  lens = []
  for b, p in enumerate(prompts):
    p = p[-width:]
    window_bs[b, :len(p)] = p
    lens.append(len(p))
  return window_bs, np.asarray(lens, np.int32)


def check_length(prompt_len: int, max_new_tokens: int, seq_len: int) -> None:
  """Cached generation holds prompt + new tokens in `seq_len` cache slots (RoPE positions
  0 .. seq_len - 1): a longer request is one ConfigError naming the keys."""
  if prompt_len + max_new_tokens > seq_len:
    raise ConfigError(
        f"sample.max_new_tokens={max_new_tokens} + the longest prompt's {prompt_len} tokens = "
        f"{prompt_len + max_new_tokens} > data.seq_len={seq_len} (the key/value cache holds "
        f"data.seq_len positions); set sample.max_new_tokens <= {seq_len - prompt_len}, a "
        "shorter sample.prompt, or sample.kv_cache=False (recomputes a sliding window)")


# ------------------------------------------------------------------------------------------
# The two loops. Each returns a jitted fn(params, ..., key) -> (tokens_bn, logits_bnv or None).

def make_cached(model: Any, *, max_new_tokens: int, cache_len: int, temperature: float,
                top_k: int | None = None, top_p: float = 1.0, with_logits: bool = False
                ) -> Callable[..., tuple[jax.Array, jax.Array | None]]:
  """jit fn(params, tokens_bp, pad_b, key) -> (new tokens int32 [B, N], the logits each was
  drawn from [B, N, V] if `with_logits` else None) for a model with a cache
  (`gpt.decode_model`); `tokens_bp`, `pad_b` from `left_pad`, P + N <= cache_len."""
  decoder = gpt.decode_model(model)
  if decoder is None:
    raise ValueError(f"{type(model).__name__} has no key/value cache (gpt.decode_model)")

  def forward(params, cache, tokens_bt, index, pad_b, valid_bs):
    t = jnp.arange(tokens_bt.shape[1], dtype=jnp.int32)
    positions_bt = jnp.maximum(index + t[None, :] - pad_b[:, None], 0)  # padding: 0, unused
    decode = kvcache.Decode(jnp.asarray(index, jnp.int32), positions_bt, valid_bs)
    variables = {"params": params} if cache is None else {"params": params,
                                                            kvcache.CACHE: cache}
    logits_btv, mutated = decoder.apply(variables, tokens_bt, decode,
                                        mutable=[kvcache.CACHE])
    return logits_btv[:, -1], mutated[kvcache.CACHE]

  def draw(logits_bv, key, i):
    return sample_logits(logits_bv, jax.random.fold_in(key, i), temperature, top_k, top_p)

  @jax.jit
  def run(params, tokens_bp, pad_b, key):
    prompt_len = tokens_bp.shape[1]
    valid_bs = jnp.arange(cache_len, dtype=jnp.int32)[None, :] >= pad_b[:, None]
    logits_bv, cache = forward(params, None, tokens_bp, 0, pad_b, valid_bs)
    tok_b = draw(logits_bv, key, 0)

    def step(carry, i):  # feeds token i at slot P + i, draws token i + 1
      cache, tok_b, logits_bv = carry
      next_logits_bv, cache = forward(params, cache, tok_b[:, None], prompt_len + i, pad_b,
                                      valid_bs)
      out = (tok_b, logits_bv if with_logits else None)
      return (cache, draw(next_logits_bv, key, i + 1), next_logits_bv), out

    (_, last_b, last_logits_bv), (toks_nb, logits_nbv) = jax.lax.scan(
        step, (cache, tok_b, logits_bv), jnp.arange(max_new_tokens - 1, dtype=jnp.int32))
    tokens_bn = jnp.concatenate([toks_nb.T, last_b[:, None]], axis=1)
    if not with_logits:
      return tokens_bn, None
    return tokens_bn, jnp.concatenate([jnp.swapaxes(logits_nbv, 0, 1), last_logits_bv[:, None]],
                                      axis=1)

  return run


def make_recompute(model: Any, *, max_new_tokens: int, window_len: int, temperature: float,
                   top_k: int | None = None, top_p: float = 1.0, with_logits: bool = False
                   ) -> Callable[..., tuple[jax.Array, jax.Array | None]]:
  """jit fn(params, window_bs, len_b, key) -> (new tokens int32 [B, N], logits [B, N, V] or
  None), running the whole window for each token (any family); `window_bs`, `len_b` from
  `right_pad(prompts, window_len)`."""

  @jax.jit
  def run(params, window_bs, len_b, key):
    rows_b = jnp.arange(window_bs.shape[0])

    def step(carry, i):
      window_bs, len_b = carry
      logits_bsv = model.apply({"params": params}, window_bs)
      logits_bv = logits_bsv[rows_b, len_b - 1]
      tok_b = sample_logits(logits_bv, jax.random.fold_in(key, i), temperature, top_k, top_p)
      full_b = len_b == window_len  # slide a full row left by one, then append
      window_bs = jnp.where(full_b[:, None], jnp.roll(window_bs, -1, axis=1), window_bs)
      len_b = len_b - full_b.astype(len_b.dtype)
      window_bs = window_bs.at[rows_b, len_b].set(tok_b)
      return (window_bs, len_b + 1), (tok_b, logits_bv if with_logits else None)

    _, (toks_nb, logits_nbv) = jax.lax.scan(step, (window_bs, len_b),
                                            jnp.arange(max_new_tokens, dtype=jnp.int32))
    return toks_nb.T, None if logits_nbv is None else jnp.swapaxes(logits_nbv, 0, 1)

  return run


def uses_cache(model: Any, kv_cache: bool) -> bool:
  """Whether `generate` takes the cached loop: asked for, and the model has a cache."""
  return bool(kv_cache) and gpt.decode_model(model) is not None


def generate(model: Any, params: Any, prompts: Sequence[Sequence[int]], *, seq_len: int,
             max_new_tokens: int, key: jax.Array, temperature: float = 0.0,
             top_k: int | None = None, top_p: float = 1.0, kv_cache: bool = True,
             with_logits: bool = False) -> tuple[np.ndarray, np.ndarray | None]:
  """`max_new_tokens` new tokens after each prompt (token lists, lengths may differ): the
  cached loop where `uses_cache`, with a cache of `seq_len` slots (prompt + new tokens beyond
  it: `check_length`'s ConfigError), else the recomputed one over a window of `seq_len`.
  Returns (tokens int32 [B, N], the logits they were drawn from [B, N, V] or None)."""
  checks.integer("sample.max_new_tokens", max_new_tokens, 1)
  check_sampling(temperature, top_k, top_p)
  rows = as_prompts(prompts)
  kw = dict(max_new_tokens=max_new_tokens, temperature=temperature, top_k=top_k, top_p=top_p,
            with_logits=with_logits)
  if uses_cache(model, kv_cache):
    tokens_bp, pad_b = left_pad(rows)
    check_length(tokens_bp.shape[1], max_new_tokens, seq_len)
    fn = make_cached(model, cache_len=seq_len, **kw)
    tokens_bn, logits = fn(params, jnp.asarray(tokens_bp), jnp.asarray(pad_b), key)
  else:
    window_bs, len_b = right_pad(rows, seq_len)
    fn = make_recompute(model, window_len=seq_len, **kw)
    tokens_bn, logits = fn(params, jnp.asarray(window_bs), jnp.asarray(len_b), key)
  return np.asarray(tokens_bn), None if logits is None else np.asarray(logits)
