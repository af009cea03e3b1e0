"""Generation throughput: cached (key/value cache) against recomputing the window per token.

  python scripts/bench_generate.py --out bench_generate.json     # configs/gpt.py:cpu, batch 1
  python scripts/bench_generate.py --config configs/gpt.py --set model.vocab_size=50304 \
      --prompt_len 128 --batch 1,8,32 --reps 3                   # GPU: the 124M GPT
  python scripts/bench_generate.py --smoke          # tiny, for the tests

Rows: batch size x loop (cached, recompute); columns: new tokens/s (prefill included), ms per
token, speedup over recomputation, compile seconds. Random parameters, greedy, random prompts
of --prompt_len tokens, --new_tokens new ones; data.seq_len (the cache and window length) is
raised to hold both where the config's is shorter. Prints a table and writes JSON
(`jaxgpt/bench/generate.py`).
"""

from __future__ import annotations

from absl import flags

from jaxgpt import cli
from jaxgpt.bench import args, generate

_F = args.define("configs/gpt.py:cpu", "Tiny run for tests (configs/gpt.py:test, prompt 8 + "
                 "16 new tokens, batch 1 and 2, one timed call).", sets=True)
_PROMPT = flags.DEFINE_integer("prompt_len", 64, "Prompt tokens per row.", lower_bound=1)
_NEW = flags.DEFINE_integer("new_tokens", 256, "New tokens per row.", lower_bound=1)
_BATCH = cli.define_int_list("batch", [1], "Batch sizes, e.g. --batch=1,8.")
_REPS = flags.DEFINE_integer("reps", 1, "Timed calls per row (the median is reported).",
                             lower_bound=1)


def main(argv):
  cli.no_arguments(argv)
  config_arg, sets, prompt, new, batch, reps = (_F.config.value, _F.sets.value, _PROMPT.value,
                                                _NEW.value, _BATCH.value, _REPS.value)
  if _F.smoke.value:
    config_arg, sets, prompt, new, batch, reps = "configs/gpt.py:test", [], 8, 16, [1, 2], 1
  generate.run(config_arg, sets, prompt, new, batch, reps, _F.out.value)
  return 0


if __name__ == "__main__":
  cli.run(main)
