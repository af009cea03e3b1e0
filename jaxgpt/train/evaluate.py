"""Evaluation over a split's fixed windows: sums on the device, totals in float64 on the host.

One function serves single runs (params of one model) and vmapped cohorts (params stacked on a
trial axis, eval step vmapped): the eval step returns sums of shape () or (K,), and the result
is one summary per trial (`step.summarize_eval`: val_loss, val_acc, val_tokens, val_bpb; for a
SentencePiece tokenizer also parameter-golf's count, val_bytes_pg and val_bpb_pg).
The "val" split of a mixture (`jaxgpt.data.mixture`) is each source's split `val/<name>` on its
own, combined: `val_loss/<name>`, `val_bpb/<name>`, ... and their weighted average as `val_loss`.
"""

from __future__ import annotations

import sys
from typing import Any, Callable

import jax
import numpy as np
from tqdm.auto import tqdm

from jaxgpt import data
from jaxgpt.data import mixture as mixture_lib
from jaxgpt.data import tokenizer as tokenizer_lib
from jaxgpt.parallel import rules as rules_lib
from jaxgpt.train import setup as setup_lib
from jaxgpt.train import step as step_lib


def evaluate_trials(spec: Any, config: Any, eval_fn: Callable, params: Any, split: str,
                    max_tokens: int | None, put: Callable[[dict], Any], *,
                    process_index: int = 0, process_count: int = 1, desc: str = "eval",
                    show: bool = False) -> list[dict]:
  """Per-trial summaries of `split` (first `max_tokens` tokens; None: all of it; of a
  mixture's "val": the first `max_tokens` of each source's, combined by `mixture.combine`).

  `put(local_batch) -> device batch` places each host batch (a single run: the global batch
  over the mesh; a cohort: replicated over its devices).
  """
  weights = mixture_lib.val_weights(spec) if split == "val" else {}
  if weights:
    per_source = {name: evaluate_trials(spec, config, eval_fn, params, f"val/{name}",
                                        max_tokens, put, process_index=process_index,
                                        process_count=process_count, desc=f"{desc} {name}",
                                        show=show)
                  for name in weights}
    k = len(next(iter(per_source.values())))
    return [mixture_lib.combine({n: s[i] for n, s in per_source.items()}, weights)
            for i in range(k)]
  kwargs = dict(split=split, seq_len=config.data.seq_len,
                batch_size=setup_lib.eval_batch_size(config), max_tokens=max_tokens)
  batches = data.eval_batches(spec, process_index=process_index, process_count=process_count,
                              **kwargs)
  if show:
    batches = tqdm(batches, total=data.num_eval_batches(spec, **kwargs), desc=desc,
                   leave=False, file=sys.stderr, dynamic_ncols=True)
  sums: dict[str, np.ndarray] = {}
  for local in batches:
    out = jax.device_get(eval_fn(params, put(local)))
    for name, v in out.items():
      sums[name] = sums.get(name, 0.0) + np.asarray(v, np.float64)
  k = int(np.size(next(iter(sums.values())))) if sums else 1
  out = [step_lib.summarize_eval({n: np.reshape(v, (-1,))[i] for n, v in sums.items()})
         for i in range(k)]
  return [{**s, **raw_bytes_summary(spec, split, s), **pg_summary(spec, split, s)}
          for s in out]


_TOKEN_BYTES: dict[tuple, int] = {}  # (split files, token count) -> bytes the tokens stand for


def split_token_bytes(spec: Any, split: str) -> int:
  """The bytes a split's tokens stand for (their per-token counts summed), read once."""
  files = tuple(spec.files(split))
  n = spec.split_tokens[split]
  key = (files, n)
  if key not in _TOKEN_BYTES:
    stream = data.TokenStream(files)
    _TOKEN_BYTES[key] = int(sum(int(spec.token_bytes[stream.read(a, min(a + PG_CHUNK, n))].sum())
                                for a in range(0, n, PG_CHUNK)))
  return _TOKEN_BYTES[key]


def raw_bytes_summary(spec: Any, split: str, summary: dict) -> dict:
  """For a lossy tokenizer (`spec.lossy`: its tokens stand for fewer or other bytes than the
  raw text), val_bpb over the split's raw UTF-8 bytes: the scored targets' token bytes x (raw
  bytes / token bytes of the whole split), exact when the whole split is scored; the token
  bytes' figure stays as `val_bpb_tokens` (`val_bytes_tokens`). {} for an exact tokenizer or
  a split whose raw bytes are unknown."""
  raw = spec.split_bytes.get(split) if getattr(spec, "lossy", None) else None
  if not raw or "val_bytes" not in summary or spec.token_bytes is None or \
     split not in spec.split_tokens:
    return {}
  total = split_token_bytes(spec, split)
  if not total:
    return {}
  val_bytes = summary["val_bytes"] * raw / total
  loss_sum = summary["val_loss"] * summary["val_tokens"]
  return {"val_bytes": val_bytes, "val_bpb": loss_sum / (np.log(2.0) * val_bytes),
          "val_bytes_tokens": summary["val_bytes"], "val_bpb_tokens": summary["val_bpb"]}


PG_CHUNK = 1 << 22  # targets per read when counting parameter-golf's bytes


def pg_summary(spec: Any, split: str, summary: dict) -> dict:
  """`val_bytes_pg` and `val_bpb_pg`: parameter-golf's byte count of the scored targets (the
  first `val_tokens` of the split: target k is token k + 1, `tokenizer.pg_bytes`) and the
  bits per byte over it, for a SentencePiece tokenizer; {} for any other. The exact
  `val_bpb` beside it is unchanged."""
  tok = getattr(spec, "tokenizer", None)
  num_targets = summary.get("val_tokens", 0)
  if not hasattr(tok, "pg_tables") or not num_targets:
    return {}
  tables = tok.pg_tables()
  stream = data.TokenStream(spec.files(split))
  pg = sum(tokenizer_lib.pg_bytes(tables, stream.read(start, min(start + PG_CHUNK,
                                                                 num_targets) + 1))
           for start in range(0, num_targets, PG_CHUNK))
  loss_sum = summary["val_loss"] * num_targets
  return {"val_bytes_pg": pg, "val_bpb_pg": loss_sum / (np.log(2.0) * pg) if pg else None}


def evaluate(run: setup_lib.Run, eval_fn: Callable, params: Any, split: str,
             max_tokens: int | None, *, desc: str = "eval", show: bool = False) -> dict:
  """The summary of one model's `split` (a single run's params on its mesh)."""
  return evaluate_trials(run.spec, run.config, eval_fn, params, split, max_tokens,
                         lambda local: rules_lib.global_batch(local, run.mesh),
                         process_index=jax.process_index(), process_count=jax.process_count(),
                         desc=desc, show=show)[0]
