"""Start N local processes of one command as a `jax.distributed` job (for testing multi-host).

  python scripts/launch_local.py -n 2 [--devices_per_process 1] [--port 0] \
      -- python -m jaxgpt.main --config configs/gpt.py:test --workdir /tmp/run2

Each process gets JAX_COORDINATOR_ADDRESS=localhost:PORT, JAX_NUM_PROCESSES=N and
JAX_PROCESS_ID=i, which `jaxgpt.parallel.distributed` reads (distributed.initialize="auto"
joins the job); on CPU (the default platform here) the processes talk over gloo. Output lines
are prefixed with the process id. If one process fails the others are stopped; the exit code
is the first non-zero one. On a real cluster use SLURM (srun) or Open MPI (mpirun) instead:
JAX detects both (README, "Multi-host").
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time

from absl import app, flags

from jaxgpt import cli

_NUM_PROCESSES = flags.DEFINE_integer("num_processes", 2, "Processes to start.", lower_bound=1,
                                      short_name="n")
_DEVICES = flags.DEFINE_integer("devices_per_process", 1, "Simulated CPU devices per process.",
                                lower_bound=1)
_PORT = flags.DEFINE_integer("port", 0, "Coordinator port (0: a free one).", lower_bound=0)
_PLATFORM = flags.DEFINE_string("platform", "cpu", "JAX_PLATFORMS for the processes ('' keeps "
                                "the environment's).")
_TIMEOUT = flags.DEFINE_float("timeout", None, "Seconds before stopping all.")


def free_port() -> int:
  with socket.socket() as s:
    s.bind(("localhost", 0))
    return s.getsockname()[1]


def process_env(base: dict, index: int, count: int, port: int, devices: int,
                platform: str | None) -> dict:
  env = dict(base)
  env.update(JAX_COORDINATOR_ADDRESS=f"localhost:{port}", JAX_NUM_PROCESSES=str(count),
             JAX_PROCESS_ID=str(index))
  if platform:
    env["JAX_PLATFORMS"] = platform
  flags = [f for f in env.get("XLA_FLAGS", "").split()
           if not f.startswith("--xla_force_host_platform_device_count")]
  if devices > 1:
    flags.append(f"--xla_force_host_platform_device_count={devices}")
  env["XLA_FLAGS"] = " ".join(flags)
  return env


def _pump(proc: subprocess.Popen, prefix: str) -> None:
  for line in proc.stdout:
    sys.stdout.write(f"{prefix}{line}")
    sys.stdout.flush()


def launch(command: list[str], num_processes: int, *, port: int = 0, devices: int = 1,
           platform: str | None = "cpu", timeout: float | None = None) -> int:
  """Runs `command` as `num_processes` processes; returns the first non-zero exit code (or 0)."""
  port = port or free_port()
  procs = []
  for i in range(num_processes):
    env = process_env(os.environ, i, num_processes, port, devices, platform)
    procs.append(subprocess.Popen(command, env=env, stdout=subprocess.PIPE,
                                  stderr=subprocess.STDOUT, text=True))
  pumps = [threading.Thread(target=_pump, args=(p, f"[p{i}] "), daemon=True)
           for i, p in enumerate(procs)]
  for t in pumps:
    t.start()
  deadline = None if timeout is None else time.monotonic() + timeout
  code = 0
  while any(p.poll() is None for p in procs):
    failed = [p.returncode for p in procs if p.returncode not in (None, 0)]
    late = deadline is not None and time.monotonic() > deadline
    if failed or late:
      code = failed[0] if failed else 124
      for p in procs:  # only the processes this launcher started
        if p.poll() is None:
          p.terminate()
      break
    time.sleep(0.1)
  for p in procs:
    try:
      p.wait(timeout=30)
    except subprocess.TimeoutExpired:
      p.kill()
      p.wait()
  for t in pumps:
    t.join(timeout=5)
  return code or next((p.returncode for p in procs if p.returncode), 0)


def main(argv) -> int:
  command = argv[1:]  # absl stops parsing flags at `--` and passes the rest through
  if not command:
    raise app.UsageError("give the command after --, e.g. launch_local.py -n 2 -- python -m "
                         "jaxgpt.main --config configs/gpt.py:test")
  return launch(command, _NUM_PROCESSES.value, port=_PORT.value, devices=_DEVICES.value,
                platform=_PLATFORM.value or None, timeout=_TIMEOUT.value)


if __name__ == "__main__":
  cli.run(main)
