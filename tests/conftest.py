"""Test setup: single CPU device by default, a persistent compilation cache, a shared data cache.

Multi-device tests run in subprocesses that set XLA_FLAGS themselves, so this suite is never
silently 8-way data parallel.
"""

import os
import pathlib
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]
_CACHE = pathlib.Path(os.environ.get("JAXGPT_TEST_CACHE", ROOT / ".pytest_cache" / "jax"))
_CACHE.mkdir(parents=True, exist_ok=True)
# Environment first, so subprocesses started by tests inherit the same caches.
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", str(_CACHE))
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0.5")
os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.pop("XLA_FLAGS", None)

import jax  # noqa: E402

jax.config.update("jax_compilation_cache_dir", os.environ["JAX_COMPILATION_CACHE_DIR"])
jax.config.update("jax_persistent_cache_min_compile_time_secs",
                  float(os.environ["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"]))

sys.path.insert(0, str(ROOT))
