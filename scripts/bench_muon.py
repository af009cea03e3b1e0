"""Muon benchmarks: optimizer-update time on a GPT's hidden matrices, and orthogonality.

  python scripts/bench_muon.py --out runs/bench_muon.json          # 12 x 768 GPT (minutes on CPU)
  python scripts/bench_muon.py --smoke --out /tmp/bench_muon.json  # tiny, seconds (tests run it)
  python scripts/bench_muon.py --cases "ours f32" --cases optax.adamw   # only those update cases

Times the optimizer update on a GPT's hidden matrices (ours f32 / bf16, per-matrix and stacked
leaves; optax.contrib.muon; optax.adamw; orthogonalization alone, batched and looped), and
measures the orthogonality of each method's output against steps and dtype. What each case
runs: `jaxgpt/bench/muon.py`. Prints tables and writes JSON.
"""

from __future__ import annotations

from absl import flags

from jaxgpt import cli
from jaxgpt.bench import muon

_SMOKE = flags.DEFINE_bool("smoke", False, "Tiny sizes (seconds).")
_OUT = flags.DEFINE_string("out", "bench_muon.json", "JSON output path.")
_LAYERS = flags.DEFINE_integer("layers", 12, "GPT layers.", lower_bound=1)
_D_MODEL = flags.DEFINE_integer("d-model", 768, "GPT width d.", lower_bound=1)
_HEADS = flags.DEFINE_integer("heads", 12, "Attention heads H.", lower_bound=1)
_REPEATS = flags.DEFINE_integer("repeats", 3, "Timed runs per update case.", lower_bound=1)
_ORTHO_SIZE = flags.DEFINE_integer("ortho-size", 256, "n of the n x n orthogonality inputs.",
                                   lower_bound=2)
_SKIP_TIMING = flags.DEFINE_bool("skip-timing", False, "Only the orthogonality part.")
_CASES = flags.DEFINE_multi_string("cases", [], "Time only the update cases whose name contains "
                                   "this (repeatable; names hold commas).")


def main(argv):
  cli.no_arguments(argv)
  layers, d_model, heads = _LAYERS.value, _D_MODEL.value, _HEADS.value
  repeats, ortho_size = _REPEATS.value, _ORTHO_SIZE.value
  if _SMOKE.value:
    layers, d_model, heads, repeats, ortho_size = 2, 32, 4, 1, 24
  muon.run(layers, d_model, heads, repeats, ortho_size, _SKIP_TIMING.value, _CASES.value,
           _SMOKE.value, _OUT.value)
  return 0


if __name__ == "__main__":
  cli.run(main)
