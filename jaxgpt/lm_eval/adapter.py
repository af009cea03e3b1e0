"""A jaxgpt model as lm-evaluation-harness's model `jaxgpt` (the `lm_eval` extra).

`JaxgptLM` subclasses `lm_eval.api.model.LM` and is registered as `--model jaxgpt`; it reads a
workdir's latest checkpoint (`train.inference.load_params`) with the config in its config.json
and the data's own tokenizer. Its three request types:

- `loglikelihood(context, continuation)`: the continuation's summed log-probability (nats) and
  whether greedy decoding gives it; context and continuation are encoded as lm-eval's own
  models do (whole text, then the context's tokens split off; the context's trailing spaces move
  to the continuation), and the window keeps the last `data.seq_len` + 1 tokens.
- `loglikelihood_rolling(text)`: the text's summed log-probability in lm-eval's disjoint
  rolling windows of `data.seq_len` tokens, the first conditioned on the prefix token.
- `generate_until(context, gen_kwargs)`: greedy (or, with `do_sample`, sampled) tokens from
  `train.generate.generate` (the key/value cache where context + max_gen_toks fit the window,
  else the sliding window), cut at the first of the `until` strings.

Scoring runs in fixed-shape batches ([batch_size, seq_len], padded: one compilation) through
`train.step.token_losses`, the loss the trainer minimises; sums are taken on the host in
float64. The prefix token (what an empty context conditions on) is the tokenizer's
document-boundary token, else the encoding of a newline (the separator the embedded corpus and
text sources put between documents).

Importing this module imports lm-eval (not torch: nothing used here needs it).
"""

from __future__ import annotations

import glob
import math
import os
from typing import Any, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from lm_eval import utils as lm_utils
from lm_eval.api.model import LM
from lm_eval.api.registry import register_model

from jaxgpt import config as config_lib
from jaxgpt import files
from jaxgpt.errors import ConfigError
from jaxgpt.train import generate, inference
from jaxgpt.train import setup as setup_lib
from jaxgpt.train import step as step_lib

MODEL_NAME = "jaxgpt"
MAX_GEN_TOKS = 256  # generate_until's default when a task gives no max_gen_toks


def load_config(workdir: str):
  """The config a workdir's run trained with (its config.json)."""
  path = os.path.join(workdir, "config.json")
  if not os.path.exists(path):
    raise FileNotFoundError(f"no config.json in {workdir}: train a run there first")
  return config_lib.from_saved(files.read_json(path))


def encode_pair(tok, context: str, continuation: str, prefix: Sequence[int]
                ) -> tuple[list[int], list[int]]:
  """(context ids, continuation ids) as lm-eval's models split them: trailing spaces of the
  context go to the continuation; the whole text is encoded and the context's ids split off;
  an empty context is the prefix token."""
  if not context:
    return list(prefix), [int(t) for t in tok.encode(continuation)]
  n_spaces = len(context) - len(context.rstrip())
  if n_spaces:
    context, continuation = context[:-n_spaces], context[-n_spaces:] + continuation
  whole = [int(t) for t in tok.encode(context + continuation)]
  n_context = len(tok.encode(context))
  return whole[:n_context], whole[n_context:]


def _batch_size(value: Any, default: int) -> int:
  """lm-eval's --batch_size: an integer, or "auto" (here: `default`)."""
  if value is None or (isinstance(value, str) and value.startswith("auto")):
    return default
  return max(1, int(value))


@register_model(MODEL_NAME)
class JaxgptLM(LM):
  """A jaxgpt checkpoint for lm-eval: `--model jaxgpt --model_args workdir=DIR`."""

  def __init__(self, workdir: str | None = None, batch_size: Any = None,
               max_batch_size: Any = None, device: Any = None, seed: int = 0,
               loaded: tuple | None = None, **unused):
    """`workdir`: a run directory (its config.json and latest checkpoint); or `loaded` = (config,
    run, params) of a run in memory (the end-of-training hook). `device` is lm-eval's and
    ignored: JAX places the model. `seed`: the sampling seed of `do_sample` requests."""
    super().__init__()
    del max_batch_size, device, unused
    if loaded is None:
      if workdir is None:
        raise ConfigError("--model jaxgpt needs --model_args workdir=DIR (a run directory)")
      config = load_config(workdir)
      run, params, _ = inference.load_params(config, workdir)
    else:
      config, run, params = loaded
    if run.spec.tokenizer is None:
      raise ConfigError("lm-eval needs the run's tokenizer; data.name='shards' without one has "
                        "none (prepare the corpus with python -m jaxgpt.data.prepare)")
    self.config, self.run, self.params = config, run, params
    self.tok = run.spec.tokenizer
    self.seq_len = int(config.data.seq_len)
    self.batch_size = _batch_size(batch_size, setup_lib.eval_batch_size(config))
    self.seed = int(seed)
    bos = self.tok.bos_id
    self.prefix = [int(bos)] if bos is not None else [int(t) for t in self.tok.encode("\n")]
    self._score_fn = jax.jit(self._score_batch)

  # -- lm-eval's interface
  @property
  def max_length(self) -> int:
    return self.seq_len

  @property
  def tokenizer_name(self) -> str:
    return getattr(self.tok, "name", "jaxgpt")

  def loglikelihood(self, requests) -> list[tuple[float, bool]]:
    rows = []
    for req in requests:
      context, continuation = req.args[0], req.args[1]
      ctx, cont = encode_pair(self.tok, context, continuation, self.prefix)
      if len(cont) > self.seq_len:
        raise ValueError(f"a continuation of {len(cont)} tokens is longer than the model's "
                         f"window data.seq_len={self.seq_len}")
      rows.append(((ctx + cont)[-(self.seq_len + 1):], len(cont)))
    out = self.score(rows)
    for req, res in zip(requests, out):
      self.cache_hook.add_partial("loglikelihood", req.args, res)
    return out

  def loglikelihood_rolling(self, requests) -> list[float]:
    out = []
    for req in requests:
      tokens = [int(t) for t in self.tok.encode(req.args[0])]
      windows = [lm_utils.make_disjoint_window(w) for w in lm_utils.get_rolling_token_windows(
          tokens, self.prefix[-1], self.seq_len, 1)]
      total = sum(lp for lp, _ in self.score([(c + p, len(p)) for c, p in windows]))
      self.cache_hook.add_partial("loglikelihood_rolling", req.args, total)
      out.append(total)
    return out

  def generate_until(self, requests) -> list[str]:
    out = []
    for i, req in enumerate(requests):
      context, kwargs = req.args[0], dict(req.args[1] if len(req.args) > 1 else {})
      until = kwargs.get("until") or []
      until = [until] if isinstance(until, str) else list(until)
      sample = bool(kwargs.get("do_sample", False))
      temperature = float(kwargs.get("temperature", 1.0)) if sample else 0.0  # 0: greedy
      ids = [int(t) for t in (self.tok.encode(context) if context else self.prefix)]
      ids = ids[-self.seq_len:]  # the window holds the context's tail
      n = int(kwargs.get("max_gen_toks", MAX_GEN_TOKS))
      with self.run.context():  # cached where it fits the window, else the sliding window
        new, _ = generate.generate(
            self.run.model, self.params, [ids], seq_len=self.seq_len, max_new_tokens=n,
            key=jax.random.PRNGKey(self.seed + i), temperature=temperature,
            top_k=kwargs.get("top_k"), kv_cache=len(ids) + n <= self.seq_len)
      text = cut_at(self.tok.decode(new[0]), until)
      self.cache_hook.add_partial("generate_until", req.args, text)
      out.append(text)
    return out

  # -- scoring
  def _score_batch(self, params, inputs_bt, targets_bt):
    """Per-token log-probability of each target and whether it is the argmax."""
    logits_btv = self.run.model.apply({"params": params}, inputs_bt)
    logp_bt = -step_lib.token_losses(logits_btv, targets_bt)
    return logp_bt, jnp.argmax(logits_btv, axis=-1) == targets_bt

  def score(self, rows: Sequence[tuple[list[int], int]]) -> list[tuple[float, bool]]:
    """(summed log-probability, all greedy) of the last n tokens of each row (tokens, n): the
    row's tokens predicted from the ones before them, in batches of [batch_size, seq_len]."""
    out = []
    b, t = self.batch_size, self.seq_len
    for start in range(0, len(rows), b):
      chunk = rows[start:start + b]
      inputs, targets = np.zeros((b, t), np.int32), np.zeros((b, t), np.int32)
      for r, (tokens, _) in enumerate(chunk):
        inputs[r, :len(tokens) - 1], targets[r, :len(tokens) - 1] = tokens[:-1], tokens[1:]
      with self.run.context():
        logp, greedy = jax.device_get(self._score_fn(self.params, inputs, targets))
      for r, (tokens, n) in enumerate(chunk):
        end = len(tokens) - 1
        out.append((float(np.sum(logp[r, end - n:end], dtype=np.float64)),
                    bool(np.all(greedy[r, end - n:end]))))
    return out


def cut_at(text: str, until: Sequence[str]) -> str:
  """`text` up to the first occurrence of any of the stop strings."""
  cut = len(text)
  for stop in until:
    if stop:
      at = text.find(stop)
      if at >= 0:
        cut = min(cut, at)
  return text[:cut]


# ------------------------------------------------------------------------------------------
# Tasks: names, task YAML files and folders of them, as lm-eval's command line takes them.

def resolve_tasks(tasks: Sequence[str]) -> tuple[list, Any]:
  """(task specs for `lm_eval.simple_evaluate`, its TaskManager). A YAML path is its config; a
  folder, every YAML in it; a name is looked up in lm-eval's task index (built only when a name
  is given: it reads lm-eval's ~14,000 task files). An unknown name or a missing path is a
  ConfigError naming it."""
  # lm-eval's task machinery loads `datasets` (seconds): imported when tasks are resolved
  from lm_eval.tasks import TaskManager
  from lm_eval.tasks._yaml_loader import load_yaml

  specs, names = [], []
  for task in tasks:
    if task.endswith((".yaml", ".yml")):
      if not os.path.isfile(task):
        raise ConfigError(f"eval.tasks: task file {task!r} does not exist")
      specs.append(load_yaml(os.path.abspath(task), resolve_func=True))
    elif os.path.isdir(task):
      found = sorted(glob.glob(os.path.join(task, "*.yaml")))
      if not found:
        raise ConfigError(f"eval.tasks: folder {task!r} holds no task YAML")
      specs += [load_yaml(os.path.abspath(f), resolve_func=True) for f in found]
    else:
      names.append(task)
  manager = TaskManager(include_defaults=bool(names))
  missing = [n for n in names if not manager.match_tasks([n])]
  if missing:
    raise ConfigError(f"eval.tasks: unknown lm-eval task(s) {', '.join(missing)} (`lm-eval ls "
                      "tasks` lists them; a task of your own is a YAML path)")
  return specs + names, manager


def flat_scores(results: dict) -> dict[str, float]:
  """lm-eval's results as summary.json keys `lm_eval/<task>/<metric>` (numbers only; the
  filter is kept where it is not "none": `acc,strict`)."""
  out = {}
  for task, metrics in results.get("results", {}).items():
    for key, value in metrics.items():  # metrics are "name,filter"; others (sample_len) not
      if "," not in key or isinstance(value, bool) or not isinstance(value, (int, float)):
        continue
      metric, _, filt = key.partition(",")
      name = metric if filt in ("", "none") else f"{metric},{filt}"
      out[f"lm_eval/{task}/{name}"] = float(value) if math.isfinite(value) else None
  return out


def evaluate(lm: JaxgptLM, tasks: Sequence[str], *, limit: int | None = None,
             num_fewshot: int | None = None) -> dict[str, float]:
  """Runs `tasks` on `lm` with `lm_eval.simple_evaluate`; the flat scores."""
  from lm_eval import simple_evaluate  # loads the task machinery, as above

  specs, manager = resolve_tasks(tasks)
  results = simple_evaluate(model=lm, tasks=specs, task_manager=manager, limit=limit,
                            num_fewshot=num_fewshot, batch_size=lm.batch_size)
  return flat_scores(results or {})


__all__ = ["JaxgptLM", "MODEL_NAME", "cut_at", "encode_pair", "evaluate", "flat_scores",
           "load_config", "resolve_tasks"]
