"""Generation throughput (scripts/bench_generate.py): tokens/s of cached generation (prefill,
then one token per step over a key/value cache) against recomputing the whole window for every
token, both the jitted loops of `jaxgpt/train/generate.py`, on a config's model with random
parameters (throughput does not depend on training).

Each row: one batch size and loop; B rows of random prompts of `prompt_len` tokens, `new_tokens`
new tokens each (greedy), cache and window of `data.seq_len` slots, raised to prompt + new where
the config's is shorter (the model is random: its training length means nothing). tokens/s
counts the new tokens, B x new / the median seconds of a whole call (the prefill included, the
first call, which compiles, excluded and reported as `compile_s`).
"""

from __future__ import annotations

from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jaxgpt import cli, models
from jaxgpt import config as config_lib
from jaxgpt.bench import args, output, timing
from jaxgpt.train import generate

DEFAULT_VOCAB = 256  # model.vocab_size unset: the byte tokenizer's size


def random_model(config, vocab_size: int):
  """(model, float32 params) of `config.model`, initialised from seed 0."""
  model = models.build_model(config.model, vocab_size)
  init = jax.jit(lambda key: model.init(key, jnp.zeros((1, 8), jnp.int32))["params"])
  return model, nn.unbox(init(jax.random.PRNGKey(0)))


def loops(model, prompt_bp: np.ndarray, new_tokens: int, seq_len: int) -> dict:
  """{"cached": fn(), "recompute": fn()}: each a whole greedy generation from the prompts (the
  cached one only where the family has a cache)."""
  rows = generate.as_prompts(prompt_bp)
  key = jax.random.PRNGKey(0)
  out = {}
  if generate.uses_cache(model, True):
    tokens_bp, pad_b = (jnp.asarray(a) for a in generate.left_pad(rows))
    cached = generate.make_cached(model, max_new_tokens=new_tokens, cache_len=seq_len,
                                  temperature=0.0)
    out["cached"] = lambda params: cached(params, tokens_bp, pad_b, key)[0]
  window_bs, len_b = (jnp.asarray(a) for a in generate.right_pad(rows, seq_len))
  recompute = generate.make_recompute(model, max_new_tokens=new_tokens, window_len=seq_len,
                                      temperature=0.0)
  out["recompute"] = lambda params: recompute(params, window_bs, len_b, key)[0]
  return out


def rows(config_arg: str, sets: Sequence[str], prompt_len: int, new_tokens: int,
         batch_sizes: Sequence[int], reps: int, show: bool = False) -> tuple[dict, list[dict]]:
  """(the setting, one row per batch size and loop); `show`: print the title, the table's
  header and each row as it is measured."""
  config = cli.load_config(config_arg, args.parse_sets(config_arg, sets))
  config_lib.validate(config)
  seq_len = max(config.data.seq_len, prompt_len + new_tokens)  # the cache holds both
  vocab = config.model.vocab_size or DEFAULT_VOCAB
  model, params = random_model(config, vocab)
  setting = {"config": config_arg, "sets": list(sets), "model": config.model.name,
             "num_params": models.count_params(params), "vocab_size": vocab,
             "seq_len": seq_len, "config_seq_len": config.data.seq_len,
             "prompt_len": prompt_len, "new_tokens": new_tokens,
             "reps": reps, "device": jax.devices()[0].device_kind}
  if show:
    print(title(config_arg, sets, setting))
    print(TABLE.header(), flush=True)
  rng = np.random.default_rng(0)
  out = []
  for b in batch_sizes:
    prompt_bp = rng.integers(0, vocab, (b, prompt_len), dtype=np.int32)
    timed = {}
    for name, fn in loops(model, prompt_bp, new_tokens, seq_len).items():
      compile_s = timing.seconds(fn, params)
      seconds = timing.median_seconds(lambda: fn(params), reps, warmup=0)
      timed[name] = {"batch": b, "loop": name, "seconds": seconds, "compile_s": compile_s,
                     "tokens_per_s": b * new_tokens / seconds,
                     "ms_per_token": 1e3 * seconds / new_tokens}
    for row in timed.values():
      row["speedup"] = timed["recompute"]["seconds"] / row["seconds"]
      out.append(row)
      if show:
        print(TABLE.line(row), flush=True)
  return setting, out


TABLE = output.Table(
    output.Column("batch", "batch", "d", width=6),
    output.Column("loop", "loop", width=10, left=True),
    output.Column("tokens/s", "tokens_per_s", ",.0f", width=10),
    output.Column("ms/token", "ms_per_token", ".2f", width=9),
    output.Column("vs recompute", "speedup", ".2f", width=13),
    output.Column("compile s", "compile_s", ".1f", width=10))


def title(config_arg: str, sets: Sequence[str], setting: dict) -> str:
  raised = ("" if setting["seq_len"] == setting["config_seq_len"]
            else f" (the config's {setting['config_seq_len']}, raised to hold prompt + new)")
  return (f"{' '.join([config_arg, *sets])}: {setting['model']}, {setting['num_params']:,} "
          f"params, seq_len {setting['seq_len']}{raised}, prompt {setting['prompt_len']} + "
          f"{setting['new_tokens']} new tokens, greedy, {setting['device']}")


def run(config_arg: str, sets: Sequence[str], prompt_len: int, new_tokens: int,
        batch_sizes: Sequence[int], reps: int, out: str | None = None) -> dict:
  """`rows`, printed row by row under the setting, and written to `out` with the machine."""
  setting, table = rows(config_arg, sets, prompt_len, new_tokens, batch_sizes, reps, show=True)
  result = {**setting, "rows": table, "machine": output.machine(),
            "backend": jax.default_backend(), "jax": jax.__version__}
  output.emit(result, out)
  return result
