"""The GPU check's runner (scripts/gpu_check.py): sections in worker processes with time limits,
their records, the JSON and the markdown table. What the sections measure is in
`jaxgpt.bench.gpu_sections`; the sizes, budget and MFU peak in the script's docstring.

Time: the sections share a budget in proportion to WEIGHTS. Each runs in its own process with a
time limit of its share plus whatever the sections before it left unused; a section past its
limit is killed and recorded as `skipped` (keeping the rows it had written), a section that
fails as `error` (with the end of its output), and the next section runs. The JSON and the table
are rewritten after every section, so a run cut short still leaves what it measured. This
module never imports jax: the GPU belongs to one section at a time.
"""

from __future__ import annotations

import datetime
import importlib.metadata
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time

from absl import app

from jaxgpt import files

SECTIONS = ("device", "gpt124m", "gated_ngpt", "muon_share", "attention", "cohort", "precision")
# Shares of --budget_s, in proportion, sized from what each compiles and runs.
WEIGHTS = {"device": 20, "gpt124m": 75, "gated_ngpt": 85, "muon_share": 75, "attention": 80,
           "cohort": 50, "precision": 65}
MIN_SECTION_S = 10.0  # below this a section is not started (recorded as skipped)
PACKAGES = ("jax", "jaxlib", "jax-cuda13-plugin", "jax-cuda12-plugin", "flax", "optax",
            "orbax-checkpoint", "chex", "numpy", "grain", "ml-collections", "optuna",
            "tensorboardX", "tokenizers")
REFERENCES = {
    "seed_gated_ngpt_tokens_per_s": {
        "value": 30803,
        "what": "published, not measured here: the time-to-target study's recommended run A1_ne "
                "(gated nGPT 11 x 768 + Muon, batch 32, sequence 128, GPT-2 vocabulary) on one "
                "H100, 5000 steps in 665 s (docs/formulas.md)"},
}

def budgets(names: list[str], total_s: float) -> dict[str, float]:
  """Each section's share of `total_s`, in proportion to WEIGHTS."""
  weight = sum(WEIGHTS[n] for n in names)
  return {n: total_s * WEIGHTS[n] / weight for n in names}


def time_limit(names: list[str], i: int, shares: dict[str, float], left_s: float) -> float:
  """Section i's limit: what is left less the shares of the sections after it. A section that
  ends early hands its rest on; each stays inside its limit, so every later one keeps its
  share."""
  return left_s - sum(shares[n] for n in names[i + 1:])


def run_worker(cmd: list[str], timeout_s: float, log_path: str, env: dict | None = None) -> dict:
  """Runs `cmd` in its own process group, output appended to `log_path`; kills the group at
  `timeout_s`. Returns {"rc", "timed_out", "seconds", "output_tail"}."""
  with open(log_path, "a") as log:
    log.write(f"\n==== {' '.join(cmd[1:2] + cmd[2:3])}\n")
    log.flush()
    start = log.tell()
    t0 = time.monotonic()
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                            start_new_session=True, env=env)
    try:
      rc, timed_out = proc.wait(timeout=max(timeout_s, 0.1)), False
    except subprocess.TimeoutExpired:
      os.killpg(proc.pid, signal.SIGKILL)  # the section's process and anything it started
      rc, timed_out = proc.wait(), True
    seconds = time.monotonic() - t0
  with open(log_path, errors="replace") as log:
    log.seek(start)
    tail = log.read().splitlines()[-15:]
  return {"rc": rc, "timed_out": timed_out, "seconds": seconds, "output_tail": tail}


def section_record(result: dict | None, worker: dict, limit_s: float) -> dict:
  """A section's entry in the JSON: its rows and keys, and a status.

  ok: it finished; error: it raised (its `error`) or its process died first (exit code and the
  end of its output); skipped: its process ran past `limit_s` and was killed before the section
  finished (rows written before are kept)."""
  rec = dict(result or {"rows": []})
  finished = "section_s" in rec  # gpu_sections.run_section writes it last
  rec.update(limit_s=limit_s, seconds=rec.get("section_s", worker["seconds"]))
  if "error" in rec:
    rec["status"] = "error"
  elif finished:
    rec["status"] = "ok"
  elif worker["timed_out"]:
    rec.update(status="skipped", reason=f"ran past its limit of {limit_s:.0f} s; killed")
  else:
    rec.update(status="error", error=f"exit code {worker['rc']} before the section finished",
               output_tail=worker["output_tail"])
  return rec


def versions() -> dict:
  """The installed versions of PACKAGES (those present)."""
  out = {}
  for name in PACKAGES:
    try:
      out[name] = importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
      pass
  return out


def nvidia_smi() -> list[str] | None:
  """nvidia-smi's one-line read of each GPU (a query: nothing is set)."""
  if shutil.which("nvidia-smi") is None:
    return None
  fields = "name,memory.total,driver_version,clocks.sm,clocks.max.sm,power.draw,temperature.gpu"
  try:
    proc = subprocess.run(["nvidia-smi", f"--query-gpu={fields}", "--format=csv,noheader"],
                          capture_output=True, text=True, timeout=30)
  except (OSError, subprocess.TimeoutExpired) as e:
    return [f"failed: {e}"]
  return [fields] + proc.stdout.strip().splitlines()


# ------------------------------------------------------------------------------------------
# The table.

def _fmt(x, spec: str) -> str:
  return "" if x is None else format(x, spec)


def table(result: dict) -> str:
  """The result as a markdown table, a row per measurement (a section's status if not ok)."""
  meta = result["meta"]
  lines = [f"# GPU check: {meta.get('device_kind') or meta['backend_hint']}, "
           f"jax {meta['versions'].get('jax', '?')}, {meta['started_utc']}"
           + (" (smoke: tiny sizes, not figures)" if meta["smoke"] else ""), "",
           "| section | case | tokens/step | tokens/s | ms/step | MFU | note |",
           "| --- | --- | --- | --- | --- | --- | --- |"]
  for name, sec in result["sections"].items():
    status = sec.get("status", "?")
    if status != "ok":
      why = sec.get("reason") or sec.get("error") or ""
      lines.append(f"| {name} | **{status}** ({sec.get('seconds', 0):.0f} s) | | | | | {why} |")
    for r in sec.get("rows", []):
      note = r.get("error") or r.get("note") or _note(r)
      mfu = r.get("mfu")
      lines.append(f"| {name} | {r['case']} | {_fmt(r.get('tokens_per_step'), ',')} | "
                   f"{_fmt(r.get('tokens_per_s'), ',.0f')} | {_fmt(r.get('ms_per_step'), '.2f')} | "
                   f"{'' if mfu is None else f'{100 * mfu:.1f}%'} | {note} |")
  ref = result["references"]["seed_gated_ngpt_tokens_per_s"]
  lines += ["", "Reference, not measured: the time-to-target study's gated nGPT A1_ne ran at "
            f"{ref['value']:,} tokens/s on one H100 (batch 32 x 128).",
            f"MFU against {meta['peak_tflops']:g} TFLOP/s (dense bf16, H100/H200 SXM datasheet)."]
  return "\n".join(lines) + "\n"


def _note(r: dict) -> str:
  """The note column of a row: its headline figure other than tokens/s."""
  if "vs_seed" in r:
    return f"{r['vs_seed']:.2f}x the time-to-target study's 30,803 tokens/s"
  if "tflops_per_s" in r:
    return f"{r['tflops_per_s']:.1f} TFLOP/s ({100 * r['fraction_of_peak']:.0f}% of peak)"
  if "ms_per_update" in r:
    return f"{r['ms_per_update']:.2f} ms per update"
  if "ms_per_call" in r:
    return f"{r['ms_per_call']:.3f} ms per call, {r['dtype']} {r['shape_bthk']}"
  if "cases" in r:
    return "; ".join(f"{c['case']} {c['median_ms']:.2f} ms" for c in r["cases"])
  if "max_abs_diff" in r:
    return (f"max abs diff {r['max_abs_diff']:.4f} (step {r['argmax_step']}), mean "
            f"{r['mean_abs_diff']:.4f}, final {r['final_abs_diff']:.4f}")
  if "final_loss" in r:
    return f"loss {r['first_loss']:.4f} -> {r['final_loss']:.4f}"
  return ""


# ------------------------------------------------------------------------------------------

def write(out_dir: str, result: dict) -> None:
  """gpu_check.json and gpu_check.md in `out_dir`, atomically."""
  files.atomic_write_json(os.path.join(out_dir, "gpu_check.json"), result)
  files.atomic_write_text(os.path.join(out_dir, "gpu_check.md"), table(result))


def run(out_dir: str, names: list[str], sections_script: str | os.PathLike, smoke: bool = False,
        budget_s: float = 430.0, peak_tflops: float = 989.0, isolate: bool | None = None) -> dict:
  """Runs the sections `names` with `sections_script` (scripts/gpu_sections.py: SECTIONS
  OUT_DIR PARAMS_JSON) in worker processes, one per section with `isolate` (default: on, off
  with `smoke`), each within its time limit; writes and returns the result, prints the table."""
  unknown = [n for n in names if n not in SECTIONS]
  if unknown or not names:
    raise app.UsageError(f"--sections={','.join(names)}: choose from {','.join(SECTIONS)}")
  isolate = (not smoke) if isolate is None else isolate
  os.makedirs(out_dir, exist_ok=True)
  log_path = os.path.join(out_dir, "gpu_check.log")
  open(log_path, "w").close()
  t_start = time.monotonic()
  deadline = time.time() + budget_s
  result = {
      "meta": {"started_utc": datetime.datetime.now(datetime.timezone.utc).strftime(
                   "%Y-%m-%d %H:%M UTC"), "smoke": smoke, "isolate": isolate,
               "budget_s": budget_s, "peak_tflops": peak_tflops, "sections": names,
               "backend_hint": os.environ.get("JAX_PLATFORMS") or "default backend",
               "python": platform.python_version(), "platform": platform.platform(),
               "cpu_count": os.cpu_count(), "load_average_at_start": os.getloadavg(),
               "versions": versions(), "nvidia_smi": nvidia_smi(),
               "compilation_cache": os.environ.get("JAX_COMPILATION_CACHE_DIR")},
      "references": REFERENCES, "sections": {}}
  shares = budgets(names, budget_s)
  with tempfile.TemporaryDirectory(prefix="gpu_check_") as tmp:
    def worker_cmd(sections: list[str], deadline_s: float) -> list[str]:
      params = {"smoke": smoke, "peak_tflops": peak_tflops, "deadline": deadline_s}
      return [sys.executable, str(sections_script), ",".join(sections), tmp, json.dumps(params)]

    def record(name: str, worker: dict, limit_s: float) -> None:
      sec = section_record(files.read_json(os.path.join(tmp, f"{name}.json"), None), worker,
                           limit_s)
      result["sections"][name] = sec
      meta = result["meta"]
      meta.setdefault("device_kind", sec.get("device_kind"))
      print(f"[gpu_check] {name}: {sec['status']} in {sec['seconds']:.0f} s "
            f"(limit {limit_s:.0f} s)", flush=True)

    if isolate:
      for i, name in enumerate(names):
        limit = time_limit(names, i, shares, budget_s - (time.monotonic() - t_start))
        if limit < MIN_SECTION_S:
          why = f"its limit would be {limit:.0f} s, under {MIN_SECTION_S:g}"
          result["sections"][name] = {"status": "skipped", "rows": [], "seconds": 0.0,
                                      "reason": why}
        else:
          record(name, run_worker(worker_cmd([name], time.time() + limit), limit, log_path),
                 limit)
        write(out_dir, result)
    else:  # one process for all: a timeout stops the rest, recorded as skipped
      worker = run_worker(worker_cmd(names, deadline), budget_s, log_path)
      for name in names:
        record(name, worker, budget_s)
      write(out_dir, result)
  result["meta"]["wall_s"] = time.monotonic() - t_start
  result["meta"]["load_average_at_end"] = os.getloadavg()
  write(out_dir, result)
  print(table(result), end="")
  print(f"wrote {out_dir}/gpu_check.json, gpu_check.md, gpu_check.log", flush=True)
  return result


