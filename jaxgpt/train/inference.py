"""Evaluation and sampling from a workdir's latest checkpoint (`--mode eval`, `--mode sample`)."""

from __future__ import annotations

import os
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxgpt import config as config_lib
from jaxgpt.train import checkpoint as ckpt_lib
from jaxgpt.train import setup as setup_lib
from jaxgpt.train import step as step_lib
from jaxgpt.train.evaluate import evaluate


def load_params(config, workdir: str) -> tuple[setup_lib.Run, Any, int]:
  """The run's setup and the latest checkpoint's parameters (error if there is none)."""
  config_lib.validate(config)
  run = setup_lib.build(config)
  directory = os.path.join(workdir, "checkpoints")
  restored = None
  if os.path.isdir(directory):
    # Read only: a training run may be writing here; damaged steps are skipped, not renamed.
    mngr = ckpt_lib.manager(directory, keep_latest=config.train.keep_checkpoints,
                            keep_best=config.train.keep_best, read_only=True)
    restored = ckpt_lib.restore_latest_good(mngr, run.abstract_state, items=("state",),
                                            quarantine=False)
    mngr.close()
  if restored is None:
    raise FileNotFoundError(f"no checkpoint in {directory}: train first (--mode train with "
                            "the same --workdir)")
  return run, restored.state.params, restored.step


def evaluate_workdir(config, workdir: str) -> dict:
  """Full-validation-split loss, accuracy and bits per byte of the latest checkpoint."""
  run, params, step = load_params(config, workdir)
  tb = setup_lib.token_bytes_array(run.spec, run.vocab_size)
  eval_fn = jax.jit(step_lib.make_eval_step(run.model.apply,
                                            None if tb is None else jnp.asarray(tb)))
  out = {"step": step}
  with run.context():
    out.update(evaluate(run, eval_fn, params, "val", None, desc="eval", show=True))
    for split in run.spec.extra_val:
      ev = evaluate(run, eval_fn, params, split, None, desc=split, show=True)
      out.update({f"{split}_{k}": v for k, v in ev.items()})
  return out


def sample_tokens(apply_fn, params, prompt_ids: np.ndarray, *, seq_len: int, max_new_tokens: int,
                  temperature: float, top_k: int | None, rng: jax.Array, num_samples: int = 1
                  ) -> np.ndarray:
  """Autoregressive sampling with a fixed-shape window (one compile; no KV cache).

  The window holds the last `seq_len` tokens; logits are read at the last filled position.
  """
  prompt_ids = np.asarray(prompt_ids, np.int32)[-seq_len:]
  if prompt_ids.size == 0:
    raise ValueError("sample.prompt encodes to no tokens")

  @jax.jit
  def next_token(params, window_nt, pos, key):
    logits_ntv = apply_fn({"params": params}, window_nt)
    logits_nv = jnp.take(logits_ntv, pos - 1, axis=1).astype(jnp.float32)
    if temperature <= 0:
      return jnp.argmax(logits_nv, axis=-1)
    logits_nv = logits_nv / temperature
    if top_k:
      kth = jax.lax.top_k(logits_nv, top_k)[0][:, -1:]
      logits_nv = jnp.where(logits_nv < kth, -jnp.inf, logits_nv)
    return jax.random.categorical(key, logits_nv, axis=-1)

  window = np.zeros((num_samples, seq_len), np.int32)
  window[:, : len(prompt_ids)] = prompt_ids
  pos = len(prompt_ids)
  out = [[] for _ in range(num_samples)]
  for _ in range(max_new_tokens):
    rng, key = jax.random.split(rng)
    if pos == seq_len:  # slide the window left by one
      window = np.roll(window, -1, axis=1)
      pos -= 1
    tok = np.asarray(next_token(params, jnp.asarray(window), pos, key))
    window[:, pos] = tok
    pos += 1
    for i in range(num_samples):
      out[i].append(int(tok[i]))
  return np.asarray(out, np.int32)


def sample_workdir(config, workdir: str) -> list[str]:
  run, params, _ = load_params(config, workdir)
  tok = run.spec.tokenizer
  if tok is None:
    raise ValueError("sampling needs a tokenizer; data.name='shards' has none")
  s = config.sample
  with run.context():
    ids = sample_tokens(run.model.apply, params, tok.encode(s.prompt),
                        seq_len=config.data.seq_len, max_new_tokens=s.max_new_tokens,
                        temperature=s.temperature, top_k=s.top_k,
                        rng=jax.random.PRNGKey(s.seed), num_samples=s.num_samples)
  return [s.prompt + tok.decode(row) for row in ids]
