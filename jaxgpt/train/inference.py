"""Evaluation and sampling from a workdir's latest checkpoint (`--mode eval`, `--mode sample`)."""

from __future__ import annotations

import os
from typing import Any

import jax
import jax.numpy as jnp

from jaxgpt import config as config_lib
from jaxgpt.train import checkpoint as ckpt_lib
from jaxgpt.train import generate
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


def sample_workdir(config, workdir: str) -> list[str]:
  """Texts continuing `sample.prompts` (or `sample.prompt`), `sample.num_samples` each, from
  the latest checkpoint; cached generation where the family has it and `sample.kv_cache`
  (`jaxgpt/train/generate.py`)."""
  s = config.sample
  generate.check_sample(s)
  run, params, _ = load_params(config, workdir)
  tok = run.spec.tokenizer
  if tok is None:
    raise ValueError("sampling needs a tokenizer; data.name='shards' has none")
  texts = [p for p in (s.prompts or (s.prompt,)) for _ in range(s.num_samples)]
  prompts = [tok.encode(t) for t in texts]
  # None: as many tokens as the window holds after the longest prompt
  new = s.max_new_tokens or max(1, config.data.seq_len - max(len(p) for p in prompts))
  with run.context():
    ids, _ = generate.generate(run.model, params, prompts,
                               seq_len=config.data.seq_len, max_new_tokens=new,
                               key=jax.random.PRNGKey(s.seed), temperature=s.temperature,
                               top_k=s.top_k, top_p=s.top_p, kv_cache=s.kv_cache)
  return [t + tok.decode(row) for t, row in zip(texts, ids)]
