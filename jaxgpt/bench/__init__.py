"""Benchmarks as library code: what `scripts/bench_*.py`, `compare_*.py`, `gpu_check.py` and the
other measuring scripts run. `timing` holds the timers (median of N, interleaved rounds,
calibrated rounds, compiled FLOPs), `output` the one table-and-JSON writer, `args` the flags the
scripts share and `--set KEY=VALUE` parsing; one module per benchmark holds its body, and
`floor_ngpt` is the plain-jnp gated nGPT reference (kept apart from the model code on purpose).
Scripts are thin entry points (flags, then a call in here); nothing else in jaxgpt imports this
package. Importing it, `output` or `gpu_check` does not import jax.
"""
