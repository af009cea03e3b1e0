"""The base experiment config, variant handling and validation.

Every file in `configs/` starts from `base_config()` and overrides what it needs; a config is
data (an `ml_collections.ConfigDict`), checked once at start by `validate`, whose errors name
the key, the bad value and what is allowed.
"""

from __future__ import annotations

import importlib.util
import json
import pathlib
import warnings
from typing import Any, Callable, Mapping, Sequence

from ml_collections import config_dict

from jaxgpt import checks, registry
from jaxgpt.errors import ConfigError, ConfigFileError

PARTITION_TABLES = ("folded", "full", "off")  # train.partition_table
# export.format: the int8+zlib artifact (jaxgpt/export/artifact.py), a transformers Llama /
# Qwen3 folder, or safetensors with jaxgpt's own config (jaxgpt/hf, docs/interop.md).
EXPORT_FORMATS = ("int8", "int6", "hf", "safetensors")
placeholder = config_dict.placeholder




def base_config() -> config_dict.ConfigDict:
  """Defaults shared by every model family; config files override them."""
  c = config_dict.ConfigDict()
  c.name = "run"  # the experiment's name: default workdir is checkpoints/<name>[-<variants>]
  c.variants = ""  # the variants applied, recorded for the default workdir and config.json

  c.model = config_dict.ConfigDict(dict(
      name="gpt",
      num_layers=12,
      d_model=768,
      num_heads=12,
      num_kv_heads=placeholder(int),  # None = num_heads
      head_dim=placeholder(int),  # None = d_model // num_heads
      mlp_mult=4.0,
      mlp_act="relu2",
      qk_norm=True,
      rope_base=10000.0,
      logit_softcap=placeholder(float),
      tie_embeddings=True,
      scan_layers=True,
      remat=False,
      compute_dtype="bfloat16",  # params are always float32; logits and loss float32
      init="gpt2",
      init_std=0.02,
      norm_eps=1e-6,
      attention_impl=placeholder(str),  # None: cuDNN flash on GPU in bf16, XLA otherwise
      parallel_block=False,  # PaLM parallel block: x + Attn(n) + MLP(n), n = Norm(x)
      encoder_layers=0,  # U-net skips: layer i < E feeds layer 2E-1-i; 0 = plain decoder
      # gpt / moe: weight of the mean squared off-diagonal cosine between the heads' slices of
      # each attention output projection, added to the loss (models/gpt.py); 0 = off.
      head_diversity=0.0,
      log_head_cos=False,  # log metric/head_cos (and head_cos_sq) even at head_diversity 0
      # Packed windows (jaxgpt/models/docmask.py): a document starts at each data.bos_id token.
      document_mask=False,  # attention is causal AND within one document (needs data.bos_id)
      document_positions=False,  # RoPE positions restart per document (needs the mask; under
                                 # RoPE the same function, other rounding: docmask.py)
      vocab_size=placeholder(int),  # None = tokenizer size padded to a multiple of 64
      # Int6 quantization-aware training (jaxgpt/optim/qat.py): the leaves the int6 artifact
      # stores int6 are fake-quantized in the training forward (straight-through gradient).
      qat="none",  # none | int6_quantile (always on) | int6_late (on below qat_threshold)
      qat_clip_quantile=0.9999984,  # int6_quantile: per-row clip at this quantile of |w|
      qat_threshold=0.15,  # int6_late: on once the LR schedule's multiplier is below this
      qat_scale_floor=placeholder(float),  # min scale; None: 1/31 for int6_late, 0 otherwise
      # nGPT family (ngpt, gated_ngpt):
      alpha=0.15,  # gated nGPT: initial residual step size
      logit_scale=15.0,  # gated nGPT: logits = logit_scale * cosine(h, output embedding)
      lazy_proj_freq=placeholder(int),  # renamed optimizer.lazy_proj_freq (read for one release)
      mlp_sqrt_d="uv",  # nGPT: sqrt(d) on both MLP inputs u, v (NVIDIA's code) or "v" (paper)
      # MoE family (model.name="moe", jaxgpt/models/moe.py): every block's MLP is routed.
      moe=config_dict.ConfigDict(dict(
          num_experts=8,  # E
          top_k=2,  # experts per token; weights = softmax over the k chosen logits
          aux_weight=0.01,  # load-balance loss coefficient (0 = off)
          aux_normalization="blueberry",  # blueberry: slot fractions sum to 1 | switch: to k
          router_noise=0.1,  # std of Gaussian noise on router logits, training only
          router_z_loss=0.0,  # router z-loss coefficient (0 = off)
          dispatch="dense",  # dense (exact, CPU default) | capacity | ragged (GPU / TPU)
          capacity_factor=1.25,  # capacity dispatch: C = ceil(T k cf / E) slots per expert
          act=placeholder(str),  # expert activation; None = model.mlp_act
      )),
  ))
  # Titans (model.name = "titans"; jaxgpt/models/titans, docs/titans.md).
  c.model.titans = config_dict.ConfigDict(dict(
      variant="mac",  # mac: memory as context (segments) | mag: memory as gate (sliding window)
      memory_heads=placeholder(int),  # None = model.num_heads
      memory_dim=placeholder(int),  # key / value width per memory head; None = head_dim
      memory_layers=2,  # memory-MLP depth L_M (1: linear memory)
      memory_width=placeholder(int),  # memory-MLP hidden width; None = memory_dim
      memory_residual=True,  # M(x) = x + mlp(x)
      chunk_size=16,  # inner mini-batch: gradients at the chunk-start weights
      segment_len=128,  # mac: segment length (a multiple of chunk_size); mag: attention window
      persistent_tokens=4,  # learned input-independent tokens per layer
      theta_max=0.01,  # inner step size theta_t = theta_max * sigmoid(.); 0.1 diverges
      # A chunk's write into the memory has global norm <= this (theta scaled down per chunk);
      # without it the inner gradient descent can diverge to inf late in training. None: off.
      max_update_norm=config_dict.FieldReference(1.0, field_type=float),
  ))

  c.data = config_dict.ConfigDict(dict(
      name="shakespeare",
      tokenizer="byte",
      bpe_vocab_size=1024,
      seq_len=1024,
      train_pattern=placeholder(str),
      val_pattern=placeholder(str),
      folio_val=False,
      data_dir=placeholder(str),
      worker_count=0,
      bos_id=placeholder(int),  # the token starting each document (50256: GPT-2 FineWeb
                                # shards; 1: parameter-golf's); None: no boundary token
      align_to_bos=False,  # training windows start at a document (a bos_id token) or k x
                           # seq_len inside one (jaxgpt/data/pipeline.py); evaluation unchanged
      # data.name="mixture": sources as dicts {name, train_pattern, val_pattern, weight[,
      # tokenizer, byte_shards]}, drawn in proportion to weight (jaxgpt/data/mixture.py)
      mixture=(),
      # Documents (jaxgpt/data/documents.py): "newline" ends each with "\n" (today's caches);
      # "bos" puts the tokenizer's boundary token before each (its id: spec.bos_id).
      document_separator="newline",
      bos_token=placeholder(str),  # bos: a tokenizer.json's special token (None: looked up)
      # Sources users bring (jaxgpt/data/text.py, tfds.py, shards.py); unset = the default.
      val_fraction=placeholder(float),  # text: files held out when val_pattern is unset (0.1)
      byte_shards=placeholder(bool),  # shards: ids are UTF-8 bytes (vocab 256, exact val_bpb)
      prepared_dir=placeholder(str),  # shards: a folder of python -m jaxgpt.data.prepare
      tfds_name=placeholder(str),  # tfds: dataset name, e.g. "lm1b" or "lm1b:1.1.0"
      tfds_data_dir=placeholder(str),  # tfds: its data_dir (None: TFDS's default)
      tfds_train_split=placeholder(str),  # tfds: "train" (any TFDS split, e.g. "train[:95%]")
      tfds_val_split=placeholder(str),  # tfds: "validation", else "test"
      tfds_text_key=placeholder(str),  # tfds: the feature holding the text ("text")
  ))

  c.optimizer = config_dict.ConfigDict(dict(
      name="adamw",
      lr=3e-4,  # Muon matrices, or everything for AdamW
      embed_lr=placeholder(float),
      head_lr=placeholder(float),
      scalar_lr=placeholder(float),
      b1=0.9,
      b2=0.95,
      eps=1e-8,
      weight_decay=0.1,
      grad_clip=1.0,  # global-norm clip; 0 disables
      schedule="cosine",
      warmup_frac=0.02,
      decay_frac=0.5,  # wsd/trapezoid: the final fraction spent decaying
      final_lr_frac=0.1,
      initial_lr_frac=0.0,  # every warm-up rises from this multiplier (PR #1434's tidal: 0.1)
      # The schedule's horizon in steps, apart from the stop: it reads step / schedule_steps
      # (no time term); train.steps / train.max_time_s may stop the run before. None: the clock.
      schedule_steps=placeholder(int),
      # wsd: decay over the last decay_steps iterations (parameter-golf's WARMDOWN_ITERS; under
      # train.max_time_s converted to time by the step time). None: decay_frac of the clock.
      decay_steps=placeholder(int),
      momentum=0.95,  # Muon
      momentum_style="ema",  # ema: m = b m + (1-b) g; sgd: m = b m + g
      nesterov=True,
      orthogonalize="newton_schulz",
      ns_steps=5,
      update_scale="shape",
      variance_reduction="none",
      beta2=0.95,  # NorMuon's second-moment EMA
      cautious_wd=False,
      momentum_warmup_steps=0,
      matrix_sharding="round_robin",  # Muon on a sharded mesh: round_robin | gather | gspmd
      lazy_proj_freq=1,  # families with a projection (nGPT): back onto the sphere every k steps
      router="adam",  # Muon runs: an MoE router's (d, E) kernel gets adam | muon
  ))
  # optimizer.name="deep_nested" (jaxgpt/optim/nested, docs/nested.md).
  c.optimizer.nested = config_dict.ConfigDict(dict(
      mode="seed",  # seed: the nested grid's optimizer | dmgd: deep momentum (hypergradient)
      momentum_layers=2,  # M: hidden layers of the momentum net
      momentum_hidden=64,  # its width (seed: capped at 20, as the nested grid's does)
      controller_layers=2,  # C: hidden layers of the LR controller (dmgd: 0 = none, mult 1)
      controller_hidden=32,
      meta_lr=1e-4,  # Adam lr of the learned nets (traced in cohorts)
      meta_every=50,  # seed: meta-update after evaluations at multiples of this step
      history=50,  # seed: recorded (val loss, multipliers) window
      max_grad_norm=1.0,  # seed: its clip, after the grad-norm stats (set grad_clip=0)
      meta_clip=1.0,  # dmgd: hypergradient global-norm clip
      momentum_init=0.9,  # dmgd: EMA beta of the momentum net at init
      newton_schulz=False,  # dmgd: orthogonalize Muon-labelled matrices (optimizer.ns_steps)
      init_seed=0,  # folded into the nets' init key (derived from the initial params)
  ))

  c.train = config_dict.ConfigDict(dict(
      steps=1000,
      batch_size=32,  # global batch in sequences per optimizer step
      grad_accum=1,
      eval_every=100,
      eval_tokens=131072,
      final_eval_tokens=placeholder(int),  # the final evaluation's tokens; None = whole val split
      eval_batch_size=placeholder(int),  # None = batch_size // grad_accum
      target_loss=placeholder(float),
      stop_at_target=True,  # False: record the step and time to target, train on
      max_time_s=placeholder(float),
      # Seconds per step the training clock counts instead of measuring (a calibrated solo step
      # time, set per trial by sweeps): the time cap, the schedule and time to target read
      # steps x step_time_s. None: measured (cohorts: their measured solo step time).
      step_time_s=placeholder(float),
      seed=0,  # parameter init; also the data order unless data_seed is set
      data_seed=placeholder(int),  # None = seed; cohort trials with one data_seed share batches
      log_every=10,
      checkpoint_every=placeholder(int),  # None = eval_every
      keep_checkpoints=2,  # latest N kept ...
      keep_best=1,  # ... plus the best N by val_loss
      progress_bar=True,
      # The optimizer partition table at the start of a single run: "folded" (repeated layers
      # as one row), "full" (every leaf) or "off"; the full table is always in partition.txt.
      partition_table="folded",
      # A checkpoint folder to start from (jaxgpt/hf/init.py): a transformers Llama / Qwen3
      # folder or an export.format="safetensors" one; its model keys and tokenizer are built
      # into the config. Ignored when the workdir holds a checkpoint (that one resumes).
      init_from=placeholder(str),
      # A jax.profiler trace of the steps that take the run from `start` to `stop` steps done
      # (metrics.jsonl rows start+1 .. stop), written to <workdir>/profile: (start, stop) with
      # 0 <= start < stop <= steps. None: no trace (jaxgpt/train/profile.py).
      profile_steps=placeholder(tuple),
  ))

  # Where a run's metrics go besides metrics.jsonl and TensorBoard (jaxgpt/train/tracking.py).
  c.log = config_dict.ConfigDict(dict(
      wandb=False,  # also log to Weights & Biases (the `wandb` extra; WANDB_MODE=offline works)
      wandb_project="jaxgpt",
      wandb_entity=placeholder(str),  # None: the account's default entity
      wandb_group=placeholder(str),  # None: none for a run; a sweep's trials: the study name
      wandb_name=placeholder(str),  # None: the workdir's name; a sweep's trial: study-t<number>
  ))

  # Benchmarks of lm-evaluation-harness run on the final parameters of a finished single run
  # (the `lm_eval` extra; jaxgpt/lm_eval): their scores go into summary.json as
  # lm_eval/<task>/<metric>.
  c.eval = config_dict.ConfigDict(dict(
      tasks=(),  # task names, task YAML paths or folders of task YAMLs; () = none
      limit=placeholder(int),  # examples per task (None: all)
      num_fewshot=placeholder(int),  # None: each task's default
  ))

  c.mesh = config_dict.ConfigDict(dict(data=-1, fsdp=1, tensor=1, expert=1))

  # Multi-host (jaxgpt/parallel/distributed.py): "auto" joins a job when a coordinator, a SLURM
  # step or an Open MPI launch with more than one process is found; unset keys come from the
  # environment (JAX_COORDINATOR_ADDRESS, JAX_NUM_PROCESSES, JAX_PROCESS_ID) or the cluster.
  c.distributed = config_dict.ConfigDict(dict(
      initialize="auto",  # auto | always | never
      coordinator_address=placeholder(str),  # host:port of process 0
      num_processes=placeholder(int),
      process_id=placeholder(int),
  ))

  c.export = config_dict.ConfigDict(dict(
      at_end=False,  # write the int8+zlib artifact and its round-trip eval when a run ends
      fp16_max_numel=65536,  # matrices this small (per layer) and all vectors stay fp16
      budget_bytes=16_000_000,  # parameter-golf: compressed model + code bytes
      # int8: int8 + zlib 9 | int6: Muon matrices in [-31, 31] (the rest int8), zstd 22 (zlib 9
      # without the zstandard package; jaxgpt/export/artifact.py) | hf: a Llama / Qwen3 folder |
      # safetensors: jaxgpt's own names and config (jaxgpt/hf); EXPORT_FORMATS
      format="int8",
      out_dir=placeholder(str),  # hf / safetensors: the folder written (None: <workdir>/<format>)
      # int6: each output channel's clip quantile of |w| is the candidate of least squared error
      int6_clip_quantiles=(0.999, 0.9995, 0.9999, 0.99999, 1.0),
      int6_scale_floor=0.0,  # int6: min scale (parameter-golf's exports: 1/31)
  ))

  # --mode sample (jaxgpt/train/generate.py checks these): num_samples rows per prompt.
  c.sample = config_dict.ConfigDict(dict(
      prompt="\n",
      prompts=(),  # several prompts, one batch (left padded); empty: sample.prompt
      max_new_tokens=placeholder(int),  # None: fill the window (seq_len - longest prompt)
      temperature=0.8,  # 0: greedy
      top_k=40,  # keep the k most likely tokens; 0: all
      top_p=1.0,  # nucleus: the most likely tokens holding this mass; 1.0: all
      kv_cache=True,  # cached generation where the family has it (gpt, moe); False: recompute
      num_samples=1,
      seed=0))
  return c


# ------------------------------------------------------------------------------------------
# Loading config files: `path[:variants]`, then dotted overrides.

ROOT = pathlib.Path(__file__).resolve().parents[1]  # the checkout holding configs/


def resolve_path(path: str) -> pathlib.Path:
  """A config path as given, else relative to the repository root."""
  p = pathlib.Path(path)
  if p.exists() or p.is_absolute():
    return p
  return ROOT / p


def check_file(path: str, resolve: bool = True) -> pathlib.Path:
  """The config file `path` (relative to the repository root too, with `resolve`; as given
  without, as ml_collections' config flags read it); raises ConfigFileError naming `path` if it
  is empty, does not exist or is a directory."""
  if not path:
    raise ConfigFileError("config file path is empty (--config configs/NAME.py[:VARIANTS])")
  p = resolve_path(path) if resolve else pathlib.Path(path)
  if not p.exists():
    raise ConfigFileError(f"config file {path} does not exist")
  if not p.is_file():
    raise ConfigFileError(f"config file {path} is a directory, not a config file")
  return p


def load_file(path: str, variants: str = "") -> config_dict.ConfigDict:
  """Imports the config file `path` and returns its `get_config(variants)`."""
  p = check_file(path)
  mod_spec = importlib.util.spec_from_file_location(f"_jaxgpt_cfg_{p.stem}", p)
  if mod_spec is None:
    raise ConfigFileError(f"config file {path} is not a Python (.py) file")
  module = importlib.util.module_from_spec(mod_spec)
  mod_spec.loader.exec_module(module)
  if not hasattr(module, "get_config"):
    raise ConfigFileError(f"config file {path} has no get_config(variants) function")
  return module.get_config(variants)


def load(arg: str, overrides: Mapping[str, Any] | None = None) -> config_dict.ConfigDict:
  """`configs/NAME.py[:VARIANTS]` with flat dotted `overrides` ({"train.steps": 8}) set."""
  path, _, variants = arg.partition(":")
  config = load_file(path, variants)
  for key, value in (overrides or {}).items():
    set_key(config, key, value)
  return config


def get_key(config, key: str) -> Any:
  node = config
  for part in key.split("."):
    if part not in node:
      raise KeyError(key)
    node = node[part]
  return node


def set_key(config, key: str, value: Any) -> None:
  """Writes `value` at dotted `key`; an unknown key is an error naming it."""
  *path, last = key.split(".")
  node = config
  for part in path:
    if part not in node:
      raise ConfigError(f"unknown config key {key!r} (no section {part!r})")
    node = node[part]
  if last not in node:
    raise ConfigError(f"unknown config key {key!r}")
  node[last] = value


def apply_overrides(config, overrides: Mapping[str, Any], prefix: str = "") -> None:
  """Nested overrides ({"train": {"steps": 8}}) written into `config`."""
  for k, v in overrides.items():
    key = f"{prefix}{k}"
    if isinstance(v, Mapping):
      apply_overrides(config, v, key + ".")
    else:
      set_key(config, key, v)


# ------------------------------------------------------------------------------------------
# Variants: "cpu,test" applies each named override function in order.

Variant = Callable[[config_dict.ConfigDict], None]


def apply_variants(config: config_dict.ConfigDict, variants: str,
                   table: Mapping[str, Variant],
                   order: Sequence[str] | None = None) -> config_dict.ConfigDict:
  """Applies comma-separated variants from `table`; an unknown name is an error naming it.

  With `order`, the variants run in that order whatever the command line's (names not in it
  last, as given): for variants that read what another one chose.
  """
  names = [v.strip() for v in variants.split(",") if v.strip()]
  if order is not None:
    names.sort(key=lambda v: order.index(v) if v in order else len(order))
  for name in names:
    if name not in table:
      raise ConfigError(f"unknown config variant {name!r}; this config allows: "
                       f"{', '.join(sorted(table)) or '(none)'}")
    table[name](config)
  config.variants = ",".join(names)
  config.lock()  # from here on, a misspelt key is an error, not a new key
  return config


# ------------------------------------------------------------------------------------------
# Validation. Allowed names come from the registries (`jaxgpt.registry`), filled by the modules
# that implement them, or from the module that owns the concept; each registered entry checks
# its own keys. The checks themselves are `jaxgpt.checks`.

# Keys renamed since a release: old -> new. The old key is still read (with a warning) for one
# release, and checkpoints saved under the old name resume without a config change.
RENAMED = {"model.lazy_proj_freq": "optimizer.lazy_proj_freq"}


def resolve_renamed(config: config_dict.ConfigDict) -> None:
  """Moves values set under a renamed key to the new key (with a warning naming both)."""
  for old, new in RENAMED.items():
    old_section, old_key = old.split(".")
    value = config[old_section].get(old_key)
    if value is None:
      continue
    warnings.warn(f"{old}={value!r} is deprecated and will be removed in the next release; "
                  f"set {new} instead", FutureWarning, stacklevel=3)
    set_key(config, new, value)
    config[old_section][old_key] = None


def validate(config: config_dict.ConfigDict) -> None:
  """Checks every value once, at start; raises ConfigError naming the key, value and rule."""
  # Importing the packages fills the registries read below. Imported here, not at the top,
  # because they load JAX: config files and sweep workers with injected trainers stay light.
  from jaxgpt import data, models, optim  # noqa: F401
  from jaxgpt.data import mixture  # data.align_to_bos, data.mixture
  from jaxgpt.models import dims  # the models own the document keys' rules; loads JAX
  from jaxgpt.models.dims import COMPUTE_DTYPES  # the models own it; loads JAX, as above
  from jaxgpt.optim import qat  # owns the model.qat and int6 export rules; loads JAX
  from jaxgpt.parallel.mesh import AXES as MESH_AXES  # the mesh owns its axes; loads JAX
  resolve_renamed(config)
  m, d, o, t = config.model, config.data, config.optimizer, config.train
  for key in ("num_layers", "d_model", "num_heads"):
    checks.integer(f"model.{key}", m[key], 1)
  checks.positive("model.vocab_size", m.vocab_size, allow_none=True)
  checks.one_of("model.compute_dtype", m.compute_dtype, COMPUTE_DTYPES)
  registry.MODELS.get(m.name).check(config)
  document_mask, _ = dims.document_flags(m)  # the families check these too, in their context
  # The data's own boundary token (document_separator "bos", a prepared folder) is known once
  # the data is prepared: setup resolves it (data.bos_id), and build_model refuses a mask
  # without one.
  dims.check_bos_id(document_mask and not dims.data_provides_bos(d), d.bos_id)

  mixture.check_train_keys(d)
  registry.DATA_SOURCES.get(d.name).check(config)
  checks.integer("data.seq_len", d.seq_len, 1)
  checks.integer("data.bpe_vocab_size", d.bpe_vocab_size, 1)
  checks.integer("data.worker_count", d.worker_count, 0)

  opt = registry.OPTIMIZERS.get(o.name)
  checks.one_of("optimizer.schedule", o.schedule, registry.SCHEDULES.names())
  checks.positive("optimizer.lr", o.lr)
  for key in ("embed_lr", "head_lr", "scalar_lr"):
    checks.positive(f"optimizer.{key}", o[key], allow_none=True)
  checks.positive("optimizer.weight_decay", o.weight_decay, allow_zero=True)
  checks.positive("optimizer.grad_clip", o.grad_clip, allow_zero=True)
  for key in ("warmup_frac", "decay_frac", "final_lr_frac", "initial_lr_frac", "b1", "b2"):
    checks.fraction(f"optimizer.{key}", o[key])
  for key in ("schedule_steps", "decay_steps"):
    checks.integer(f"optimizer.{key}", o[key], 1, allow_none=True)
  checks.integer("optimizer.lazy_proj_freq", o.lazy_proj_freq, 1)
  opt.check(config)
  registry.SCHEDULES.get(o.schedule).check(config)

  for key in ("steps", "batch_size", "grad_accum", "eval_every", "eval_tokens", "log_every"):
    checks.integer(f"train.{key}", t[key], 1)
  if t.batch_size % t.grad_accum:
    raise ConfigError(f"train.batch_size={t.batch_size} must be divisible by "
                      f"train.grad_accum={t.grad_accum}")
  checks.positive("train.max_time_s", t.max_time_s, allow_none=True)
  checks.positive("train.step_time_s", t.step_time_s, allow_none=True)
  checks.boolean("train.stop_at_target", t.stop_at_target)
  checks.one_of("train.partition_table", t.partition_table, PARTITION_TABLES)
  checks.integer("train.data_seed", t.data_seed, 0, allow_none=True)
  checks.positive("train.target_loss", t.target_loss, allow_zero=True, allow_none=True)
  checks.positive("train.checkpoint_every", t.checkpoint_every, allow_none=True)
  checks.positive("train.eval_batch_size", t.eval_batch_size, allow_none=True)
  checks.integer("train.final_eval_tokens", t.get("final_eval_tokens"), 1, allow_none=True)
  checks.positive("train.keep_checkpoints", t.keep_checkpoints)
  checks.positive("train.keep_best", t.keep_best, allow_zero=True)
  init_from = t.get("init_from")
  if init_from is not None and not (isinstance(init_from, str) and init_from):
    raise ConfigError(f"train.init_from={init_from!r} must be None or the path of a checkpoint "
                      "folder (config.json + model.safetensors)")

  qat.check(config)

  check_profile_steps(t.profile_steps, t.steps)
  validate_log(config.log)
  validate_eval(config.eval)

  e = config.export
  checks.boolean("export.at_end", e.at_end)
  checks.one_of("export.format", e.get("format", "int8"), EXPORT_FORMATS)
  out_dir = e.get("out_dir")
  if out_dir is not None and not (isinstance(out_dir, str) and out_dir):
    raise ConfigError(f"export.out_dir={out_dir!r} must be None or a folder path")
  for key in ("fp16_max_numel", "budget_bytes"):
    checks.integer(f"export.{key}", e[key], 0)
  qat.check_export(e)

  for key in MESH_AXES:
    v = config.mesh[key]
    if not (checks.is_integer(v) and (v >= 1 or v == -1)):
      raise ConfigError(f"mesh.{key}={v!r} must be a positive integer or -1 (take the rest)")
  validate_distributed(config.distributed)


def check_profile_steps(window: Any, steps: int) -> None:
  """`train.profile_steps`: None, or (start, stop) with 0 <= start < stop <= train.steps."""
  if window is None:
    return
  ok = (isinstance(window, (tuple, list)) and len(window) == 2
        and all(checks.is_integer(v) for v in window)
        and 0 <= window[0] < window[1] <= steps)
  if not ok:
    raise ConfigError(f"train.profile_steps={window!r} must be (start, stop) with 0 <= start < "
                      f"stop <= train.steps={steps} (it traces metrics rows start+1 .. stop), "
                      "or None")


def validate_log(log: config_dict.ConfigDict) -> None:
  """The `log.*` keys; `log.wandb` needs the wandb package (checked without importing it)."""
  checks.boolean("log.wandb", log.wandb)
  for key in ("wandb_project", "wandb_entity", "wandb_group", "wandb_name"):
    value = log[key]
    if value is not None and not (isinstance(value, str) and value):
      raise ConfigError(f"log.{key}={value!r} must be a non-empty string"
                        + ("" if key == "wandb_project" else " or None"))
  if log.wandb and importlib.util.find_spec("wandb") is None:
    raise ConfigError("log.wandb=True needs the wandb package, which is not installed: "
                      "pip install 'jaxgpt[wandb]'")


def validate_eval(ev: config_dict.ConfigDict) -> None:
  """The `eval.*` keys (the tasks themselves are resolved by the lm_eval run hook's check)."""
  tasks = ev.tasks
  if not (isinstance(tasks, (tuple, list)) and all(isinstance(t, str) and t for t in tasks)):
    raise ConfigError(f"eval.tasks={tasks!r} must be a tuple of lm-eval task names or task "
                      "YAML paths, e.g. ('lambada_openai',); () = none")
  checks.integer("eval.limit", ev.limit, 1, allow_none=True)
  checks.integer("eval.num_fewshot", ev.num_fewshot, 0, allow_none=True)


def validate_distributed(dist: config_dict.ConfigDict) -> None:
  """The `distributed.*` keys (`distributed.initialize` is also checked by
  `jaxgpt.parallel.distributed` before init, which owns its modes)."""
  from jaxgpt.parallel import distributed  # loads JAX: called from `validate` only
  checks.one_of("distributed.initialize", dist.initialize, distributed.MODES)
  addr = dist.coordinator_address
  if addr is not None and not (isinstance(addr, str) and addr.rpartition(":")[2].isdigit()):
    raise ConfigError(f"distributed.coordinator_address={addr!r} must be 'host:port'")
  n, i = dist.num_processes, dist.process_id
  checks.integer("distributed.num_processes", n, 1, allow_none=True)
  if i is not None and not (checks.is_integer(i) and i >= 0 and (n is None or i < n)):
    raise ConfigError(f"distributed.process_id={i!r} must be an integer in [0, "
                      f"distributed.num_processes={n})")


# ------------------------------------------------------------------------------------------
# Config comparison for resumes.

def to_dict(config: config_dict.ConfigDict) -> dict:
  return json.loads(config.to_json_best_effort())


def flatten(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
  out = {}
  for k, v in tree.items():
    key = f"{prefix}{k}"
    if isinstance(v, Mapping):
      out.update(flatten(v, key + "."))
    else:
      out[key] = v
  return out


# Keys that may change between a run and its resume without changing what is computed.
# A different mesh or process layout computes the same run (up to summation order): a checkpoint
# restores onto any mesh (jaxgpt/parallel, docs/sharding.md).
# train.init_from only seeds a fresh start: a resume ignores it.
RESUME_FREE_KEYS = ("train.progress_bar", "train.partition_table", "train.init_from",
                    "train.profile_steps", "sample.", "export.", "mesh.", "distributed.", "log.",
                    "eval.")


def _renamed(flat: dict[str, Any]) -> dict[str, Any]:
  for old, new in RENAMED.items():
    value = flat.pop(old, None)
    if value is not None and flat.get(new) is None:
      flat[new] = value
  return flat


def _base_defaults() -> dict[str, Any]:
  return flatten(to_dict(base_config()))


def from_saved(saved: Mapping[str, Any]) -> config_dict.ConfigDict:
  """The locked config of a run's config.json (`to_dict`'s output): `base_config()` with every
  saved value written over it; a key unknown to this version is an error naming it."""
  config = base_config()
  for key, value in _renamed(flatten(saved)).items():
    try:
      get_key(config, key)
    except KeyError:
      raise ConfigError(f"saved config key {key!r} is unknown to this version of jaxgpt") from None
    set_key(config, key, tuple(value) if isinstance(value, list) else value)
  config.lock()
  return config


def config_diff(old: Mapping[str, Any], new: Mapping[str, Any]) -> dict[str, tuple[Any, Any]]:
  """Keys whose values differ between two config dicts, as key -> (old, new). Values saved
  under a renamed key (`RENAMED`) compare as the new key's."""
  a, b = _renamed(flatten(old)), _renamed(flatten(new))
  diff = {}
  qat_on = any(x.get("model.qat", "none") != "none" for x in (a, b))
  for key in sorted(set(a) | set(b)):
    # with int6 QAT, export.fp16_max_numel decides which matrices training quantizes
    if key.startswith(RESUME_FREE_KEYS) and not (qat_on and key == "export.fp16_max_numel"):
      continue
    x, y = a.get(key, "<absent>"), b.get(key, "<absent>")
    if x == "<absent>" and y == _base_defaults().get(key, "<no default>"):
      continue  # a key added since, at its default: the old run computed the same
    unset = (None, "<absent>")  # an optional key added since, left unset, is no change
    if x != y and not (x in unset and y in unset):
      diff[key] = (x, y)
  return diff
