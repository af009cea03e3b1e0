"""The GPU check (issue 17): throughput, MFU and numerics of the headline configs on one GPU.

  bash scripts/gpu_check.sh                           # the one command (wheels, env, then this)
  python scripts/gpu_check.py --out runs/gpu_check    # this alone, where jaxgpt's needs are met
  python scripts/gpu_check.py --smoke --out /tmp/gc   # tiny, on a CPU, seconds (tests run it)

Writes <out>/gpu_check.json (every figure, the machine, the package versions), gpu_check.md (the
table, printed last) and gpu_check.log (every section's output). Sections, measured by
scripts/gpu_sections.py (`jaxgpt/bench/gpu_sections.py` says what each one runs):

  device      the accelerator and its bf16 matmul rate (random 8192^3)
  gpt124m     GPT 12 x 768, seq 1024, bf16, 124M: tokens/s and MFU
  gated_ngpt  gated nGPT 11 x 768 (A1_ne shape) tokens/s, beside the time-to-target study's
              30,803 (reference)
  muon_share  the optimizer update's share of the train step, Muon and AdamW
  attention   cuDNN against XLA attention (train step, the op alone, the document mask)
  cohort      a vmapped cohort of K = 16 small proxies against the 16 trials in sequence
  precision   bf16 against fp32 training loss over 50 steps

Time: the sections share --budget_s (default 430 s, so that the whole command, the wheel
install and each section's start-up included, ends inside 8 minutes), each in its own process
within its limit; one past it is recorded as `skipped`, one that fails as `error`, and the next
runs (the runner: `jaxgpt/bench/gpu_check.py`). This process never imports jax.

MFU = flops_per_token (jaxgpt.models.flops_per_token, docs/formulas.md "MFU") x tokens/s /
--peak_tflops; the default 989 TFLOP/s is the dense bf16 peak of an H100 or H200 SXM on NVIDIA's
datasheet (1,979 is with 2:4 sparsity). The `device` section also reports the matmul rate
actually reached, for comparison.
"""

from __future__ import annotations

from pathlib import Path

from absl import flags

from jaxgpt import cli
from jaxgpt.bench import gpu_check

_OUT = flags.DEFINE_string("out", "runs/gpu_check", "Output folder (gpu_check.sh passes $OUT).")
_SMOKE = flags.DEFINE_bool("smoke", False, "Tiny sizes on any backend, all sections in one "
                           "process (seconds on a CPU; the tests run it).")
_BUDGET = flags.DEFINE_float("budget_s", 430.0, "Seconds for all sections together.",
                             lower_bound=1.0)
_PEAK = flags.DEFINE_float("peak_tflops", 989.0, "Peak dense bf16 TFLOP/s for MFU (default: "
                           "H100/H200 SXM, NVIDIA's datasheet).", lower_bound=1e-9)
_SECTIONS = flags.DEFINE_list("sections", list(gpu_check.SECTIONS), "Sections to run, in order.")
_ISOLATE = flags.DEFINE_bool("isolate", None, "One process per section, each with its time "
                             "limit (default: on, off with --smoke).")


def main(argv):
  cli.no_arguments(argv)
  gpu_check.run(_OUT.value, _SECTIONS.value, Path(__file__).resolve().parent / "gpu_sections.py",
                smoke=_SMOKE.value, budget_s=_BUDGET.value, peak_tflops=_PEAK.value,
                isolate=_ISOLATE.value)
  return 0


if __name__ == "__main__":
  cli.run(main)
