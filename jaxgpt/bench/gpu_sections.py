"""The measurements of the GPU check: the sections scripts/gpu_sections.py runs, one per process.

scripts/gpu_check.py starts each section in its own process with its own time limit (on a GPU),
or all of them in one process (`--smoke`, where process start-up would cost more than the
sections), and reads OUT_DIR/<section>.json back. A section rewrites its JSON after every
measurement, so one stopped at its limit keeps what it had measured; a measurement that raises
is recorded as that row's `error` and the section goes on; a section that raises is recorded as
the section's `error` and the next section runs. `deadline` lets a section leave out its
optional rows when time is short; `sizes` (optional) overrides entries of FULL or SMOKE, e.g.
'{"smoke": true, "sizes": {"optimizers": ["muon", "adamw"]}}' runs the full set of cases at
smoke sizes.

Sections (the full sizes; `smoke` shrinks every one to seconds on a CPU):
  device      the accelerator, and the bf16 matmul rate it reaches (8192^3, random inputs)
  gpt124m     GPT 12 x 768, seq 1024, bf16, GPT-2's padded vocabulary (124M parameters):
              tokens/s and MFU through the training loop (jaxgpt.bench.train)
  gated_ngpt  gated nGPT 11 x 768, batch 32 x 128 (the time-to-target study's A1_ne shape):
              tokens/s with the GPT-2 vocabulary (as the study) and with the config's own
              BPE-1024 (jaxgpt.bench.train)
  muon_share  the 124M GPT's optimizer update alone against its whole train step, Muon and
              AdamW; Muon's update on the hidden matrices (jaxgpt.bench.muon)
  attention   the 124M GPT's train step with model.attention_impl cudnn and xla; the attention
              op alone (forward + backward); document-masked attention (3 documents a row, the
              model's causal_attention with segment ids): cuDNN's outputs and gradients against
              XLA's, each against XLA in float32
  cohort      a vmapped cohort of K = 16 configs/gpt.py:cpu proxies against the 16 trials one
              after another (jaxgpt.bench.cohort)
  precision   bf16 against fp32 (matmul precision highest): the 124M GPT's training loss over
              50 steps from the same initial state on the same batches
"""

from __future__ import annotations

import contextlib
import os
import platform
import time
import traceback
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

from jaxgpt import cli, data, files, models
from jaxgpt.bench import cohort as cohort_bench
from jaxgpt.bench import muon as muon_bench
from jaxgpt.bench import timing
from jaxgpt.bench import train as train_bench
from jaxgpt.models import layers
from jaxgpt.parallel import rules as rules_lib
from jaxgpt.train import loop as loop_lib
from jaxgpt.train import setup as setup_lib
from jaxgpt.train import step as step_lib

GPT2_VOCAB = 50304  # GPT-2's 50,257 tokens padded to a multiple of 64: 124M parameters at 12 x 768
# The time-to-target study's A1_ne on one H100 (gpu_check.REFERENCES).
SEED_NGPT_TOKENS_PER_S = 30803.0

# Full sizes (a lent H200) and smoke sizes (seconds on a CPU); the same code runs both. The smoke
# sizes keep the test configs' own vocabulary (256 bytes) and batch, so that most of what they
# compile is what other tests compiled already (the persistent compilation cache).
FULL = dict(
    gpt="configs/gpt.py", gpt_vocab=GPT2_VOCAB, gpt_steps=60, ngpt="configs/gated_ngpt.py",
    ngpt_vocab=GPT2_VOCAB, ngpt_steps=200, time_s=4.0, max_calls=200, muon_dims=(12, 768, 12),
    attn_op=(8, 1024, 12, 64), attn_dtype="bfloat16", attn_documents=3, cohort="configs/gpt.py:cpu",
    cohort_steps=30, cohort_ks=(1, 16), precision_batch=8, precision_steps=50, matmul_n=8192,
    ngpt_cases=2, optimizers=("muon", "adamw"), muon_cases=3)
SMOKE = dict(
    gpt="configs/gpt.py:test", gpt_vocab=256, gpt_steps=3, ngpt="configs/gated_ngpt.py:test",
    ngpt_vocab=256, ngpt_steps=3, time_s=0.2, max_calls=4, muon_dims=(2, 32, 4),
    attn_op=(2, 32, 4, 8), attn_dtype="float32", attn_documents=3,
    cohort="configs/gpt.py:test", cohort_steps=2,
    cohort_ks=(2,), precision_batch=4, precision_steps=4, matmul_n=256,
    ngpt_cases=1, optimizers=("muon",), muon_cases=1)  # fewer compiles: the same code paths


class Sink:
  """The section's result: rows plus extra keys, rewritten atomically after every change."""

  def __init__(self, path: str):
    self.path = path
    self.result: dict[str, Any] = {"rows": []}
    self.flush()

  def flush(self) -> None:
    files.atomic_write_json(self.path, self.result)

  def set(self, **kw) -> None:
    self.result.update(kw)
    self.flush()

  def attempt(self, case: str, measure: Callable[[], dict]) -> dict | None:
    """Runs one measurement; its row, or an `error` row if it raised (the section goes on)."""
    t0 = time.perf_counter()
    try:
      row = dict(case=case, **measure())
    except Exception as e:  # noqa: BLE001 - recorded, and the next measurement still runs
      text = " ".join(str(e).split())[:600]
      row, out = dict(case=case, error=f"{type(e).__name__}: {text}"), None
    else:
      out = row
    row["seconds"] = time.perf_counter() - t0
    self.result["rows"].append(row)
    self.flush()
    print(f"[gpu_sections] {case}: {row.get('error') or 'done'} ({row['seconds']:.1f} s)",
          flush=True)
    return out


# ------------------------------------------------------------------------------------------
# Shared pieces: configs, the compiled train step, batches on the device, timing.

def load(config_arg: str, overrides: dict | None = None):
  """The config `config_arg` with `overrides` (one-line errors)."""
  return cli.load_config(config_arg, overrides or {})


def compile_step(run: setup_lib.Run) -> tuple[Any, float]:
  """The run's train step, AOT-compiled as `run.SingleRun.compile` compiles it (same
  shardings, state donated), without the eval step; and its compile seconds."""
  cfg = run.config
  family = models.family(cfg.model.name)
  repl, batch_sh = rules_lib.replicated(run.mesh), rules_lib.batch_sharding(run.mesh)
  train_batch, _ = loop_lib.abstract_batches(cfg, batch_sh)
  fn = step_lib.make_train_step(run.model.apply, run.tx, cfg.train.grad_accum, family.collections,
                                family.rng_streams, cfg.train.seed)
  progress = jax.ShapeDtypeStruct((), jnp.float32, sharding=repl)
  t0 = time.perf_counter()
  with run.context():
    compiled = loop_lib.aot_compile(
        fn, (run.abstract_state, train_batch, progress),
        in_shardings=(run.state_shardings, batch_sh, repl),
        out_shardings=(run.state_shardings, repl), donate_argnums=(0,))
  return compiled, time.perf_counter() - t0


def device_batches(run: setup_lib.Run, n: int, seed: int = 0) -> list[dict]:
  """The first `n` training batches of the run's data order, on its mesh."""
  cfg = run.config
  it = data.train_iterator(run.spec, seq_len=cfg.data.seq_len,
                           global_batch_size=cfg.train.batch_size, seed=seed)
  try:
    host = [next(it) for _ in range(n)]
  finally:
    it.close()
  return [rules_lib.global_batch(b, run.mesh) for b in host]


def scalar(run: setup_lib.Run, x: float) -> jax.Array:
  """`x` as a float32 scalar replicated over the run's mesh."""
  return jax.device_put(np.float32(x), rules_lib.replicated(run.mesh))


def step_row(cfg, run, seconds: float, max_calls: int, peak_tflops: float) -> dict:
  """Compiles the run's train step and times it: the row of one step variant."""
  compiled, compile_s = compile_step(run)
  state = run.init_state()
  batches = device_batches(run, 4)
  progress = scalar(run, 0.5)
  state, t = timing.time_calls(lambda st, i: compiled(st, batches[i % len(batches)], progress)[0],
                        state, seconds, max_calls)
  del state
  return dict(throughput(cfg, run.vocab_size, t["s_per_call"], peak_tflops),
              compile_s=compile_s, timing=t)


def throughput(cfg, vocab_size: int, s_per_step: float, peak_tflops: float) -> dict:
  """tokens/step, tokens/s, ms/step, model FLOP/s and MFU (docs/formulas.md "MFU")."""
  tokens = cfg.train.batch_size * cfg.data.seq_len
  fpt = models.flops_per_token(cfg.model, vocab_size, cfg.data.seq_len)
  tps = tokens / s_per_step
  return {"tokens_per_step": tokens, "tokens_per_s": tps, "ms_per_step": 1e3 * s_per_step,
          "flops_per_token": fpt, "model_tflops_per_s": tps * fpt / 1e12,
          "mfu": tps * fpt / (peak_tflops * 1e12)}


def bench_row(row: dict, peak_tflops: float) -> dict:
  """A `jaxgpt.bench.train` row with its MFU."""
  return dict(row, ms_per_step=row["step_time_ms"],
              mfu=row["model_tflops_per_s"] / peak_tflops)


# ------------------------------------------------------------------------------------------
# Sections.

def device(p: dict, s: dict, sink: Sink) -> None:
  d = jax.devices()[0]
  stats = {}
  with contextlib.suppress(Exception):  # not every backend reports memory
    stats = {k: v for k, v in (d.memory_stats() or {}).items() if k == "bytes_limit"}
  sink.set(backend=jax.default_backend(), device_kind=d.device_kind,
           device_count=jax.device_count(), memory=stats)

  def matmul():
    n = s["matmul_n"]
    dtype = jnp.bfloat16 if jax.default_backend() == "gpu" else jnp.float32
    keys = jax.random.split(jax.random.PRNGKey(0), 4)  # two input pairs, rotated
    mats = [jax.random.normal(k, (n, n), dtype) for k in keys]
    f = jax.jit(lambda a, b: a @ b)
    _, t = timing.time_calls(lambda c, i: f(mats[2 * (i % 2)], mats[2 * (i % 2) + 1]), None,
                      s["time_s"], 50)
    return {"n": n, "dtype": jnp.dtype(dtype).name, "tflops_per_s": 2 * n**3 / t["s_per_call"]
            / 1e12, "fraction_of_peak": 2 * n**3 / t["s_per_call"] / (p["peak_tflops"] * 1e12),
            "timing": t}

  sink.attempt(f"{s['matmul_n']}^3 matmul, random inputs", matmul)


def gpt124m(p: dict, s: dict, sink: Sink) -> None:
  sets = [f"model.vocab_size={s['gpt_vocab']}"]
  sink.attempt("GPT 12 x 768, seq 1024, bf16, training loop",
               lambda: bench_row(train_bench.bench(s["gpt"], s["gpt_steps"], sets),
                                 p["peak_tflops"]))


def gated_ngpt(p: dict, s: dict, sink: Sink) -> None:
  sink.set(reference_tokens_per_s=SEED_NGPT_TOKENS_PER_S)
  cases = [("A1_ne shape, GPT-2 vocabulary (as the time-to-target study)",
            [f"model.vocab_size={s['ngpt_vocab']}"]),
           ("A1_ne shape, the config's BPE-1024 vocabulary", [])]
  for case, sets in cases[:s["ngpt_cases"]]:
    def measure(sets=sets):
      row = bench_row(train_bench.bench(s["ngpt"], s["ngpt_steps"], sets), p["peak_tflops"])
      return dict(row, vs_seed=row["tokens_per_s"] / SEED_NGPT_TOKENS_PER_S)
    sink.attempt(case, measure)


def muon_share(p: dict, s: dict, sink: Sink) -> None:
  variants = {"muon": {}, "adamw": {"optimizer.name": "adamw", "optimizer.lr": 6e-4}}
  for name in s["optimizers"]:
    overrides = variants[name]
    cfg = load(s["gpt"], {"model.vocab_size": s["gpt_vocab"], **overrides})
    run = setup_lib.build(cfg)

    def step_only(cfg=cfg, run=run):
      return step_row(cfg, run, s["time_s"], s["max_calls"], p["peak_tflops"])

    def update_only(cfg=cfg, run=run):
      state = run.init_state()
      leaves, tree = jax.tree.flatten(state.params)
      keys = jax.random.split(jax.random.PRNGKey(1), len(leaves))
      grads = tree.unflatten([1e-3 * jax.random.normal(k, x.shape, x.dtype)
                              for k, x in zip(keys, leaves)])
      progress = scalar(run, 0.5)
      update = lambda g, o, w, pr: run.tx.update(g, o, w, progress=pr)
      t0 = time.perf_counter()
      with run.context():
        compiled = jax.jit(update, donate_argnums=(1,)).lower(
            grads, state.opt_state, state.params, progress).compile()
      compile_s = time.perf_counter() - t0
      _, t = timing.time_calls(lambda o, i: compiled(grads, o, state.params, progress)[1],
                        state.opt_state, s["time_s"], s["max_calls"])
      return {"ms_per_update": 1e3 * t["s_per_call"], "compile_s": compile_s, "timing": t}

    step = sink.attempt(f"{name}: whole train step", step_only)
    update = sink.attempt(f"{name}: optimizer update alone", update_only)
    if step and update:
      share = update["ms_per_update"] / step["ms_per_step"]
      sink.set(**{f"{name}_update_share": share})
      update["note"] = f"{100 * share:.1f}% of the step"
      sink.flush()
    del run

  rows = {r["case"]: r for r in sink.result["rows"]}
  muon, adam = rows.get("muon: whole train step", {}), rows.get("adamw: whole train step", {})
  if "ms_per_step" in muon and "ms_per_step" in adam:
    sink.set(muon_minus_adamw_step_share=1 - adam["ms_per_step"] / muon["ms_per_step"])
  # Muon's update on the hidden matrices alone (jaxgpt.bench.muon's tree), if time is left.
  if p["deadline"] - time.time() > (30 if not p["smoke"] else 0):
    layers, d, heads = s["muon_dims"]
    cases = ("ours bf16, stacked leaves", "ours f32, stacked leaves",
             "optax.adamw, stacked leaves")

    def hidden():
      return {"layers": layers, "d_model": d, "cases":
              muon_bench.bench_updates(layers, d, heads, 3, cases[:s["muon_cases"]])}
    sink.attempt(f"hidden matrices {layers} x {d}, update alone (bench_muon)", hidden)


def attention(p: dict, s: dict, sink: Sink) -> None:
  for impl in ("cudnn", "xla"):
    cfg = load(s["gpt"], {"model.vocab_size": s["gpt_vocab"], "model.attention_impl": impl})
    sink.attempt(f"train step, attention {impl}", lambda cfg=cfg: step_row(
        cfg, setup_lib.build(cfg), s["time_s"], s["max_calls"], p["peak_tflops"]))
  b, t, h, k = s["attn_op"]
  dtype = jnp.dtype(s["attn_dtype"])
  keys = jax.random.split(jax.random.PRNGKey(0), 3)
  q, kk, v = (jax.random.normal(key, (b, t, h, k), dtype) for key in keys)
  for impl in ("cudnn", "xla"):
    def op(impl=impl):
      loss = lambda q, k, v: jax.nn.dot_product_attention(
          q, k, v, is_causal=True, implementation=impl).astype(jnp.float32).sum()
      f = jax.jit(jax.grad(loss, argnums=(0, 1, 2)))
      f.lower(q, kk, v).compile()
      _, tm = timing.time_calls(lambda c, i: f(q, kk, v), None, s["time_s"], s["max_calls"])
      return {"shape_bthk": [b, t, h, k], "dtype": dtype.name,
              "ms_per_call": 1e3 * tm["s_per_call"], "timing": tm}
    sink.attempt(f"attention op alone, forward + backward, {impl}", op)
  sink.attempt("document-masked attention, cudnn against xla", lambda: masked_agreement(
      q, kk, v, s["attn_documents"]))
  rows = {r["case"]: r for r in sink.result["rows"]}
  for what, key in (("train step", "ms_per_step"), ("attention op alone", "ms_per_call")):
    names = [c for c in rows if c.startswith(what)]
    got = {c.rsplit(" ", 1)[-1]: rows[c].get(key) for c in names}
    if got.get("cudnn") and got.get("xla"):
      sink.set(**{f"{what.replace(' ', '_')}_xla_over_cudnn": got["xla"] / got["cudnn"]})


def segment_ids(b: int, t: int, documents: int) -> jax.Array:
  """[B, T] segment ids: each row packs `documents` documents, their boundaries shifted per row
  (row r's first boundary at T / documents - r), so rows differ."""
  base = np.arange(t)[None, :] + np.arange(b)[:, None]
  return jnp.asarray(np.minimum(base * documents // t, documents - 1), jnp.int32)


def masked_agreement(q_bthk, k_bthk, v_bthk, documents: int) -> dict:
  """The document mask on the cuDNN path against the XLA path (the model's own
  `layers.causal_attention`): outputs and input gradients, each also against XLA in float32."""
  seg = segment_ids(q_bthk.shape[0], q_bthk.shape[1], documents)

  def run(impl, dtype):
    def loss(q, k, v):
      out = layers.causal_attention(q.astype(dtype), k.astype(dtype), v.astype(dtype),
                                    implementation=impl, segment_ids_bt=seg)
      return out.astype(jnp.float32).sum(), out
    (_, out), grads = jax.jit(jax.value_and_grad(loss, argnums=(0, 1, 2), has_aux=True))(
        q_bthk, k_bthk, v_bthk)
    return [np.asarray(x, np.float32) for x in (out, *grads)]
  ref = run("xla", jnp.float32)
  got = {impl: run(impl, q_bthk.dtype) for impl in ("xla", "cudnn")}
  names = ("out", "dq", "dk", "dv")

  def diff(a, b):
    return {n: float(np.max(np.abs(x - y))) for n, x, y in zip(names, a, b)}
  return {"documents_per_row": documents, "max_abs_diff_cudnn_xla": diff(got["cudnn"], got["xla"]),
          "max_abs_diff_cudnn_f32": diff(got["cudnn"], ref),
          "max_abs_diff_xla_f32": diff(got["xla"], ref),
          "max_abs_out_f32": float(np.max(np.abs(ref[0])))}


def cohort(p: dict, s: dict, sink: Sink) -> None:
  ks = list(s["cohort_ks"])
  result = {}

  def measure():
    result.update(cohort_bench.bench(s["cohort"], s["cohort_steps"], ks, p["smoke"]))
    return {"config": s["cohort"], "steps": s["cohort_steps"], "ks": ks,
            "plateau_k": result["plateau_k"]}
  if sink.attempt(f"cohort against sequential, {s['cohort']}", measure) is None:
    return
  tokens = result["meta"]["tokens_per_step_per_trial"]
  for r in result["rows"]:
    steps_s = r["cohort_train_s"] / s["cohort_steps"]
    sink.result["rows"].append({
        "case": f"K = {r['k']} vmapped", "tokens_per_step": r["k"] * tokens,
        "tokens_per_s": r["cohort_tokens_per_s"], "ms_per_step": 1e3 * steps_s,
        "speedup": r["speedup"], "note": f"{r['speedup']:.2f}x the same trials one after another",
        **r})
  sink.set(sequential_per_trial_s=result["sequential_per_trial_s"], bench_meta=result["meta"])


def precision(p: dict, s: dict, sink: Sink) -> None:
  steps, overrides = s["precision_steps"], {"model.vocab_size": s["gpt_vocab"],
                                            "train.batch_size": s["precision_batch"]}
  losses = {}
  for dtype in ("bfloat16", "float32"):
    cfg = load(s["gpt"], {**overrides, "train.steps": steps, "model.compute_dtype": dtype})

    def measure(cfg=cfg, dtype=dtype):
      highest = jax.default_matmul_precision("highest") if dtype == "float32" else None
      with highest or contextlib.nullcontext():
        run = setup_lib.build(cfg)
        compiled, compile_s = compile_step(run)
      state = run.init_state()  # the same seed: the same initial parameters for both
      batches = device_batches(run, steps)
      out = []
      for i, batch in enumerate(batches):
        state, m = compiled(state, batch, scalar(run, i / steps))
        out.append(m["train_loss"])
      losses[dtype] = np.asarray(jax.device_get(out), np.float64)
      return {"compute_dtype": dtype, "matmul_precision": "highest" if highest else "default",
              "steps": steps, "tokens_per_step": cfg.train.batch_size * cfg.data.seq_len,
              "first_loss": float(losses[dtype][0]), "final_loss": float(losses[dtype][-1]),
              "compile_s": compile_s, "losses": losses[dtype].tolist()}
    sink.attempt(f"{dtype} training loss, {steps} steps", measure)
  if len(losses) == 2:
    diff = np.abs(losses["bfloat16"] - losses["float32"])
    rel = diff / np.abs(losses["float32"])
    summary = {"max_abs_diff": float(diff.max()), "mean_abs_diff": float(diff.mean()),
               "first_abs_diff": float(diff[0]), "final_abs_diff": float(diff[-1]),
               "max_rel_diff": float(rel.max()), "argmax_step": int(diff.argmax()) + 1}
    sink.set(agreement=summary)
    sink.result["rows"].append({"case": f"bf16 vs fp32 over {steps} steps", **summary})
    sink.flush()


SECTIONS = {"device": device, "gpt124m": gpt124m, "gated_ngpt": gated_ngpt,
            "muon_share": muon_share, "attention": attention, "cohort": cohort,
            "precision": precision}


def run_section(name: str, out_dir: str, params: dict) -> None:
  """One section into OUT_DIR/<name>.json; if it raises, the error and its traceback's end."""
  sink = Sink(os.path.join(out_dir, f"{name}.json"))
  sink.set(backend=jax.default_backend(), device_kind=jax.devices()[0].device_kind,
           jax=jax.__version__, python=platform.python_version(), pid=os.getpid())
  t0 = time.perf_counter()
  try:
    sizes = dict(SMOKE if params.get("smoke") else FULL, **params.get("sizes", {}))
    SECTIONS[name](params, sizes, sink)
  except Exception as e:  # noqa: BLE001 - recorded; the next section still runs
    sink.set(error=f"{type(e).__name__}: {' '.join(str(e).split())[:600]}",
             traceback=traceback.format_exc().splitlines()[-12:])
    traceback.print_exc()
  sink.set(section_s=time.perf_counter() - t0)


