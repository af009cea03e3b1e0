"""Mixtures of token-shard sources (`data.name = "mixture"`), and the training settings a spec
carries beyond its files (`MixtureSpec`: the sources, `data.align_to_bos`).

    c.data.name = "mixture"
    c.data.mixture = (
        dict(name="web", train_pattern="/d/web/train_*.bin", val_pattern="/d/web/val_*.bin",
             weight=0.7),
        dict(name="code", train_pattern="/d/code/train_*.bin",
             val_pattern="/d/code/val_*.bin", weight=0.3),
    )

A source is a dict of `SOURCE_KEYS`: a name (letters, digits, `_ . -`; it names the source's
metrics), two globs of token shards read as `data.name = "shards"` reads them, a weight >= 0,
and optionally `tokenizer` / `byte_shards` (default `data.tokenizer` / `data.byte_shards`). Every
source must carry the same tokenizer (same vocabulary, same token table), or all raw shards
(`model.vocab_size` then bounds every id), so one model reads them all. `data.train_pattern` and
`data.val_pattern` stay unset. Weights need not sum to 1; a source of weight 0 trains nothing
but is still evaluated.

Training. Sample i of the run (i = step x B + row) reads source k as its j-th sample, (k, j) =
`Draw(weights, seed)(i)`: a balanced binary tree over the sources whose every node sends its
m-th sample left iff floor((m + 1) q + u) > floor(m q + u), q the left subtree's share of the
weight and u in [0, 1) a hash of (seed, node). Among the first n samples a node sends
floor(n q + u) left, within 1 of n q, so each source holds its share of every stretch of
samples to within the tree's depth, and j (the sample's rank within its source) is closed-form:
no state but the step, as for one source. Source k's j-th sample is its window of
`pipeline.SourceWindows`, shuffled per epoch of that source with its own seed
(`source_seed`). Integers throughout: a float weight is an exact binary fraction.

Evaluation. Evaluating "val" of a mixture evaluates each source's validation split (the split
`val/<name>`, the first `max_tokens` targets of each) and `combine`s them: `val_loss/<name>`,
`val_acc/<name>`, `val_bpb/<name>` (where bytes are known), and as `val_loss` / `val_acc` /
`val_bpb` their average under the weights (sources of weight 0 are logged, not averaged).
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import re
from fractions import Fraction
from typing import Any, Mapping, Sequence

from jaxgpt import checks, registry
from jaxgpt.data import shards
from jaxgpt.data.spec import DataSpec, get
from jaxgpt.data.tokenizer import NAMES, is_tokenizer_file
from jaxgpt.errors import ConfigError

SOURCE_KEYS = ("name", "train_pattern", "val_pattern", "weight", "tokenizer", "byte_shards")
REQUIRED_KEYS = ("name", "train_pattern", "val_pattern", "weight")
_NAME = re.compile(r"[A-Za-z0-9_.-]+")
_PHASE_BITS = 32
SUMMARY_MEANS = ("val_loss", "val_acc", "val_bpb")  # averaged under the weights
SUMMARY_SUMS = ("val_tokens", "val_bytes")  # added up


@dataclasses.dataclass(frozen=True)
class Source:
  """One source of a mixture: its name, weight and prepared shards."""
  name: str
  weight: float
  spec: DataSpec


@dataclasses.dataclass(frozen=True, eq=False)
class MixtureSpec(DataSpec):
  """A DataSpec plus how training reads it. `sources`: the mixture's sources (then the spec's
  train / val files are their concatenations, for vocabulary checks and whole-split reads),
  () for the spec's own files. `align_bos`: training windows start at this token
  (`data.align_to_bos`), None for windows at a stride."""
  sources: tuple[Source, ...] = ()
  align_bos: int | None = None

  def files(self, split: str) -> tuple[str, ...]:
    """The shard files of `split`: a DataSpec's splits, or `val/<name>` / `train/<name>`."""
    return {**splits(self), "train": self.train_files, "val": self.val_files,
            **self.extra_val}[split]


def splits(spec: DataSpec) -> dict[str, tuple[str, ...]]:
  """`{"train/<name>": files, "val/<name>": files}` of a mixture's sources; {} otherwise."""
  out = {}
  for s in getattr(spec, "sources", ()):
    out[f"train/{s.name}"], out[f"val/{s.name}"] = s.spec.train_files, s.spec.val_files
  return out


def val_weights(spec: DataSpec) -> dict[str, float]:
  """name -> weight of a mixture's sources, in order; {} for a spec that is not a mixture."""
  return {s.name: s.weight for s in getattr(spec, "sources", ())}


# ------------------------------------------------------------------------------------------
# Which source each sample reads.

def _phase(seed: int, path: str) -> Fraction:
  """u in [0, 1) of the tree node at `path` ("", "L", "LR", ...): a hash of (seed, path)."""
  digest = hashlib.blake2b(f"jaxgpt-mixture:{seed}:{path}".encode(), digest_size=4).digest()
  return Fraction(int.from_bytes(digest, "little"), 1 << _PHASE_BITS)


def _tree(weights: Sequence[Fraction], first: int, seed: int, path: str) -> Any:
  """Sources first .. first + len(weights) - 1 as a leaf (the source index) or a node
  (a, c, d, left, right): among a node's first m samples, (m a + c) // d went left."""
  if len(weights) == 1:
    return first
  half = len(weights) // 2
  left, right = sum(weights[:half]), sum(weights[half:])
  q = left / (left + right) if left + right else Fraction(0)  # an all-zero subtree: unreached
  u = _phase(seed, path)
  d = math.lcm(q.denominator, u.denominator)
  return (q.numerator * (d // q.denominator), u.numerator * (d // u.denominator), d,
          _tree(weights[:half], first, seed, path + "L"),
          _tree(weights[half:], first + half, seed, path + "R"))


class Draw:
  """i -> (k, j): sample i of the run reads source k, as the j-th sample drawn from it.

  A pure function of (weights, seed, i); the module docstring gives the rule.
  """

  def __init__(self, weights: Sequence[float], seed: int):
    fractions = [Fraction(w) for w in weights]
    if any(w < 0 for w in fractions) or not sum(fractions):
      raise ValueError(f"mixture weights {list(weights)} must be >= 0, not all 0")
    self.tree = _tree(fractions, 0, int(seed), "")

  def __call__(self, i: int) -> tuple[int, int]:
    node, m = self.tree, int(i)
    while not isinstance(node, int):
      a, c, d, left, right = node
      before = (m * a + c) // d  # of this node's first m samples, so many went left
      if ((m + 1) * a + c) // d > before:
        node, m = left, before
      else:
        node, m = right, m - before
    return node, m


def source_seed(seed: int, name: str) -> int:
  """The seed of a source's own window shuffle: a hash of (seed, name)."""
  digest = hashlib.blake2b(f"jaxgpt-source:{seed}:{name}".encode(), digest_size=6).digest()
  return int.from_bytes(digest, "little")


# ------------------------------------------------------------------------------------------
# Evaluation.

def combine(summaries: Mapping[str, dict], weights: Mapping[str, float]) -> dict:
  """A mixture's evaluation from its sources' summaries (`step.summarize_eval`): each source's
  `val_loss/<name>`, `val_acc/<name>`, `val_bpb/<name>`; the weights' average of each of those
  that every source of weight > 0 has; `val_tokens` and `val_bytes` summed."""
  weighted = {n: w for n, w in weights.items() if w > 0}
  total = sum(weighted.values())
  out = {}
  for key in SUMMARY_MEANS:
    if all(key in summaries[n] for n in weighted):
      out[key] = sum(w * summaries[n][key] for n, w in weighted.items()) / total
  for key in SUMMARY_SUMS:
    if all(key in s for s in summaries.values()):
      out[key] = sum(s[key] for s in summaries.values())
  for name, s in summaries.items():
    out.update({f"{key}/{name}": s[key] for key in SUMMARY_MEANS if key in s})
  return out


# ------------------------------------------------------------------------------------------
# Config: data.mixture, data.align_to_bos.

def _source_tokenizer(cfg: Any, entry: Mapping, key: str) -> tuple[str, bool]:
  """(tokenizer, byte_shards) of a source, defaults from `cfg`, checked as `shards` does."""
  tok = entry.get("tokenizer", get(cfg, "tokenizer", "byte"))
  byte_shards = entry.get("byte_shards", get(cfg, "byte_shards", False))
  if tok not in NAMES and not is_tokenizer_file(tok):
    raise ConfigError(f"{key}.tokenizer={tok!r} must be 'byte', 'bpe' (both mean: no "
                      "tokenizer for raw shards) or the path of a tokenizer.json or .model")
  checks.boolean(f"{key}.byte_shards", byte_shards)
  if byte_shards and tok != "byte":
    raise ConfigError(f"{key}.byte_shards=True and {key}.tokenizer={tok!r}: byte shards need "
                      "tokenizer 'byte'")
  return tok, byte_shards


def _source(cfg: Any, entry: Any, k: int, names: set) -> dict:
  """Source k of data.mixture with every key of SOURCE_KEYS, checked."""
  key = f"data.mixture[{k}]"
  if not isinstance(entry, Mapping):
    raise ConfigError(f"{key}={entry!r} must be a dict with keys {SOURCE_KEYS}")
  unknown = [name for name in entry if name not in SOURCE_KEYS]
  if unknown:
    raise ConfigError(f"{key}.{unknown[0]} is not a source key; a source has {SOURCE_KEYS}")
  missing = [name for name in REQUIRED_KEYS if name not in entry]
  if missing:
    raise ConfigError(f"{key}.{missing[0]} is missing; a source needs {REQUIRED_KEYS}")
  name = entry["name"]
  if not (isinstance(name, str) and _NAME.fullmatch(name)):
    raise ConfigError(f"{key}.name={name!r} must be a non-empty string of letters, digits, "
                      "'_', '.' and '-' (it names the source's metrics)")
  if name in names:
    raise ConfigError(f"{key}.name={name!r} is taken by an earlier source; names are unique")
  names.add(name)
  for pattern in ("train_pattern", "val_pattern"):
    if not (isinstance(entry[pattern], str) and entry[pattern]):
      raise ConfigError(f"{key}.{pattern}={entry[pattern]!r} must be a glob of token shards")
  weight = checks.number(f"{key}.weight", entry["weight"], 0)
  if not math.isfinite(weight):
    raise ConfigError(f"{key}.weight={weight!r} must be a finite number >= 0")
  tok, byte_shards = _source_tokenizer(cfg, entry, key)
  return {**entry, "weight": float(entry["weight"]), "tokenizer": tok, "byte_shards": byte_shards}


def sources(cfg: Any) -> list[dict]:
  """data.mixture's sources, each with every key of SOURCE_KEYS; one-line ConfigErrors."""
  entries = get(cfg, "mixture", ())
  if isinstance(entries, Mapping) or not isinstance(entries, Sequence) or not entries:
    raise ConfigError(f"data.mixture={entries!r} must be a non-empty sequence of sources "
                      f"(dicts with keys {SOURCE_KEYS}) when data.name='mixture'")
  names: set = set()
  out = [_source(cfg, entry, k, names) for k, entry in enumerate(entries)]
  if not any(s["weight"] > 0 for s in out):
    raise ConfigError(f"data.mixture[*].weight are all 0 ({[s['name'] for s in out]}): at "
                      "least one source needs a weight > 0")
  return out


def check_train_keys(cfg: Any) -> None:
  """data.align_to_bos (needs a boundary token) and data.mixture (needs data.name='mixture'), for
  every source."""
  align = checks.boolean("data.align_to_bos", get(cfg, "align_to_bos", False))
  provides = (get(cfg, "document_separator", "newline") == "bos" or get(cfg, "prepared_dir")
              or get(cfg, "bos_id") is not None)
  if align and not provides:
    raise ConfigError("data.align_to_bos=True needs a token that starts each document: set "
                      "data.bos_id, data.document_separator='bos' or data.prepared_dir; got "
                      "data.bos_id=None")
  name = get(cfg, "name", "shakespeare")
  if get(cfg, "mixture", ()) and name != "mixture":
    raise ConfigError(f"data.mixture is set but data.name={name!r}: a mixture needs "
                      "data.name='mixture'")


def check_data(cfg: Any) -> None:
  """The keys of `data.name = "mixture"`."""
  check_train_keys(cfg)
  for key in ("train_pattern", "val_pattern"):
    if get(cfg, key):
      raise ConfigError(f"data.{key}={get(cfg, key)!r} must be unset when data.name='mixture' "
                        f"(each source of data.mixture has its own {key})")
  sources(cfg)


def check(config: Any) -> None:
  """data.mixture, and model.vocab_size for raw shards (no tokenizer vouches for the ids)."""
  check_data(config.data)
  raw = [k for k, s in enumerate(sources(config.data))
         if not s["byte_shards"] and not is_tokenizer_file(s["tokenizer"])]
  if raw and config.model.vocab_size is None:
    raise ConfigError(f"model.vocab_size=None must be set: data.mixture[{raw[0]}] holds raw "
                      "token shards (no tokenizer.json, not byte_shards)")


# ------------------------------------------------------------------------------------------
# Preparing a mixture.

def _fingerprint(spec: DataSpec) -> tuple:
  """What must agree between sources: the tokenizer's vocabulary and token table (None: raw)."""
  tok = spec.tokenizer
  if tok is None:
    return ("raw shards (no tokenizer)",)
  hf = getattr(tok, "hf", None)
  return (f"vocabulary {tok.vocab_size}", tok.token_bytes.tobytes(),
          hf.to_str() if hf is not None else tok.name)


def _setting(entries: Sequence[dict], k: int) -> str:
  """The key that gives source k its tokenizer, with its value."""
  key = "byte_shards" if entries[k]["byte_shards"] else "tokenizer"
  return f"data.mixture[{k}].{key}={entries[k][key]!r}"


def _check_same_tokenizer(prepared: Sequence[DataSpec], entries: Sequence[dict]) -> None:
  """Every source has source 0's tokenizer; else one line naming the first that differs."""
  first = _fingerprint(prepared[0])
  for k, spec in enumerate(prepared[1:], 1):
    mine = _fingerprint(spec)
    if mine != first:
      what = (f"{mine[0]} vs {first[0]}" if mine[0] != first[0]
              else f"both {mine[0]}, different tokens")
      raise ConfigError(f"{_setting(entries, k)} differs from {_setting(entries, 0)} ({what}): "
                        "the sources of a mixture must share one tokenizer")


def _check_lengths(cfg: Any, prepared: Sequence[DataSpec], entries: Sequence[dict]) -> None:
  """Each source's splits hold a window (data.seq_len + 1 tokens)."""
  seq_len = get(cfg, "seq_len")
  if seq_len is None:
    return
  for k, spec in enumerate(prepared):
    for split, n in spec.split_tokens.items():
      if n < seq_len + 1:
        raise ConfigError(f"data.seq_len={seq_len} is too long for the {split} split of "
                          f"data.mixture[{k}] ({entries[k]['name']!r}: {n} tokens; a window "
                          "needs seq_len + 1)")


def training_spec(spec: DataSpec, cfg: Any) -> DataSpec:
  """`spec` with the training settings of `cfg` = config.data: a MixtureSpec whose `align_bos`
  is the boundary token under data.align_to_bos (data.bos_id, else the data's `spec.bos_id`);
  `spec` itself when it is a plain DataSpec and there is nothing to add."""
  bos = None
  if get(cfg, "align_to_bos", False):  # data.bos_id, else the data's own boundary token
    bos = get(cfg, "bos_id") if get(cfg, "bos_id") is not None else spec.bos_id
    if bos is None:
      raise ConfigError(f"data.align_to_bos=True but the {spec.name} data has no token that "
                        "starts each document; set data.bos_id")
  if isinstance(spec, MixtureSpec):
    return dataclasses.replace(spec, align_bos=bos)
  if bos is None:
    return spec
  fields = {f.name: getattr(spec, f.name) for f in dataclasses.fields(DataSpec)}
  return MixtureSpec(**fields, align_bos=bos)


def prepare(cfg: Any) -> MixtureSpec:
  """The MixtureSpec of data.mixture: each source's shards prepared as `shards` prepares them
  (globs, tokenizer, vocabulary check), checked for one tokenizer and for room for a window."""
  entries = sources(cfg)
  for k, entry in enumerate(entries):  # errors name the source's keys
    for pattern in ("train_pattern", "val_pattern"):
      shards.glob_shards(entry[pattern], f"data.mixture[{k}].{pattern}")
  prepared = [shards.prepare_source(entry) for entry in entries]
  _check_same_tokenizer(prepared, entries)
  _check_lengths(cfg, prepared, entries)
  first = prepared[0]
  split_tokens, split_bytes = {}, {}
  for split in ("train", "val"):
    split_tokens[split] = sum(s.split_tokens[split] for s in prepared)
    if all(split in s.split_bytes for s in prepared):
      split_bytes[split] = sum(s.split_bytes[split] for s in prepared)
  for entry, s in zip(entries, prepared):
    split_tokens.update({f"{k}/{entry['name']}": v for k, v in s.split_tokens.items()})
    split_bytes.update({f"{k}/{entry['name']}": v for k, v in s.split_bytes.items()})
  spec = MixtureSpec(
      name="mixture", train_files=sum((s.train_files for s in prepared), ()),
      val_files=sum((s.val_files for s in prepared), ()), extra_val={},
      vocab_size=first.vocab_size, tokenizer=first.tokenizer, token_bytes=first.token_bytes,
      split_tokens=split_tokens, split_bytes=split_bytes, lossy=first.lossy,
      sources=tuple(Source(e["name"], e["weight"], s) for e, s in zip(entries, prepared)))
  return training_spec(spec, cfg)


registry.DATA_SOURCES.register("mixture", registry.DataSource(
    prepare=prepare, check_data=check_data, check=check))
