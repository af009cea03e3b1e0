"""Training batches (a Grain pipeline) and evaluation batches over token shards.

Training. The train shards form one token stream of N tokens. An epoch is a set of W windows
of seq_len + 1 tokens at stride seq_len (inputs are a window's first seq_len tokens, targets
its last seq_len), starting at a random offset drawn per epoch, so window edges move between
epochs. Sample i of the run (i = step * B + row, B the global batch) lies in epoch i // W, at
the window that Grain's `index_shuffle` (a seeded permutation of [0, W), computed per index
without materialising it) maps i % W to. The data order is therefore a pure function of
(seed, step): no state but the step, a resume is exact, and it does not depend on the number
of processes. Process p of P reads rows [p B / P, (p + 1) B / P) of every global batch.

Document-aligned windows (`data.align_to_bos`, `MixtureSpec.align_bos`), as modded-nanogpt's
loader aligns its batches: a window starts at a document start (a `data.bos_id` token) or
k x seq_len after one, inside that document. The windows are fixed once per stream by a greedy
walk (`aligned_starts`): the first starts at the first document; each next one at the first
allowed start at or after the previous window's end (start + seq_len). So windows never overlap
and a document longer than a window is cut into windows at seq_len, none of its tokens dropped.
What is dropped: the tokens before the first document; where a window ends inside a document
that began within it, that document's tokens up to the next allowed start (its end, or its next
multiple of seq_len); and the stream's tail that no longer holds a whole window (a window never
runs past the end: it would be dropped, not shortened). Every other token is an input of exactly
one window per epoch. Documents of exponentially distributed lengths, mean seq_len / 8 to
4 seq_len, lose 9 to 23% of their tokens so (the same in every epoch). The W windows of an epoch
are shuffled exactly as above (epoch offset 0).

Mixtures (`jaxgpt.data.mixture`): sample i reads source k as its j-th sample, (k, j) a pure
function of (weights, seed, i); each source has its own stream, windows (either kind) and
shuffle seed, with epochs of its own windows. Still no state but the step.

Speed: the Grain record is a whole batch (index = step), gathered with numpy slices of the
memmapped shards, rather than one record per row: a per-row pipeline pays Grain's per-record
cost B times per step (measured by scripts/bench_input.py). Grain's thread prefetch overlaps
reading with training; `worker_count > 0` moves the work into Grain worker processes.
`index_shuffle` costs about 4 us per sample at 10^5 windows per epoch but 30 us at 10^3 and
0.5 ms at 50 (measured on CPU): tiny streams (tests, small mixture sources) read slowly.

Evaluation. Non-overlapping windows of seq_len from the start of a split cover its target
tokens (all tokens but the first) in order; `max_tokens` caps the number of scored targets
(the fixed evaluation set of `train.eval_tokens`), `None` scores every target exactly once.
Every batch has the same shape; padding rows and positions carry weight 0, so one compiled
evaluation step serves all batches. A mixture's sources are the splits `val/<name>`.
"""

from __future__ import annotations

import functools
import hashlib
import math
from typing import Iterator, Sequence

import numpy as np

from jaxgpt.data import mixture as mixture_lib
from jaxgpt.data.shards import TokenStream

_SHUFFLE_ROUNDS = 4
_NO_END = 1 << 48  # the step range of a training run is unbounded in practice
STATE_VERSION = 1


def _grain():
  """Grain, imported on first use: it imports jax and orbax (seconds of start-up) that
  preparing data or evaluating does not need."""
  import grain
  return grain


# ------------------------------------------------------------------------------------------
# Training windows: which tokens sample i of the run reads.

def window_layout(num_tokens: int, seq_len: int) -> tuple[int, int]:
  """(windows per epoch W, largest epoch offset) for a stream of `num_tokens`.

  W stays the same in every epoch, so the epoch of sample i is i // W; the offset leaves room
  for W windows: o + (W - 1) * seq_len + seq_len + 1 <= num_tokens.
  """
  if num_tokens < seq_len + 1:
    raise ValueError(f"data.seq_len={seq_len} is too long for the train split "
                     f"({num_tokens} tokens; a window needs seq_len + 1)")
  num_windows = max(1, (num_tokens - seq_len) // seq_len)
  max_offset = min(seq_len - 1, num_tokens - 1 - num_windows * seq_len)
  return num_windows, max_offset


@functools.lru_cache(maxsize=64)
def epoch_params(seed: int, epoch: int, max_offset: int) -> tuple[int, int]:
  """(permutation seed, window offset) of one epoch: a pure function of (seed, epoch).

  A hash rather than a numpy Generator, whose streams may change between numpy versions.
  """
  digest = hashlib.blake2b(f"jaxgpt-epoch:{seed}:{epoch}".encode(), digest_size=12).digest()
  perm_seed = int.from_bytes(digest[:4], "little")  # index_shuffle takes a uint32 seed
  return perm_seed, int.from_bytes(digest[4:], "little") % (max_offset + 1)


def shuffled_windows(sample_ids: Sequence[int], seed: int, num_windows: int,
                     max_offset: int) -> tuple[np.ndarray, np.ndarray]:
  """(window in [0, W), epoch offset): int64[len(sample_ids)] each, of each sample's window."""
  shuffle = _grain().experimental.index_shuffle
  windows, offsets = (np.empty(len(sample_ids), dtype=np.int64) for _ in range(2))
  for r, i in enumerate(sample_ids):
    epoch, pos = divmod(int(i), num_windows)
    perm_seed, offsets[r] = epoch_params(seed, epoch, max_offset)
    windows[r] = shuffle(pos, num_windows - 1, perm_seed, _SHUFFLE_ROUNDS)
  return windows, offsets


def window_starts(sample_ids: Sequence[int], seed: int, num_windows: int, max_offset: int,
                  seq_len: int) -> np.ndarray:
  """int64[len(sample_ids)]: the first token of each sample's window in the stream."""
  windows, offsets = shuffled_windows(sample_ids, seed, num_windows, max_offset)
  return offsets + windows * seq_len


# ------------------------------------------------------------------------------------------
# Document-aligned windows.

def document_starts(stream: TokenStream, bos_id: int, block: int = 1 << 24) -> np.ndarray:
  """int64: the positions of `bos_id` in the stream, read `block` tokens at a time."""
  found = [np.flatnonzero(stream.read(lo, min(lo + block, len(stream))) == bos_id) + lo
           for lo in range(0, len(stream), block)]
  return np.concatenate(found).astype(np.int64) if found else np.zeros(0, np.int64)


def _chain(nxt: np.ndarray) -> np.ndarray:
  """The sorted nodes 0, nxt[0], nxt[nxt[0]], ... below n = len(nxt) of a list whose links
  point forward (nxt[i] > i, n: the end), by pointer doubling: O(n log n), vectorised."""
  n = len(nxt)
  jump = np.append(np.asarray(nxt, np.int64), n)  # the end links to itself
  nodes = np.zeros(1, np.int64)  # invariant: nodes = {f^m(0) : m < 2^s}, jump = f^(2^s)
  while jump[0] < n:  # the chain is longer than 2^s
    nodes = np.union1d(nodes, jump[nodes])
    jump = jump[jump]
  return nodes[nodes < n]


def aligned_starts(doc_starts: np.ndarray, num_tokens: int, seq_len: int) -> np.ndarray:
  """int64, increasing: the first token of every document-aligned window of a stream of
  `num_tokens` tokens whose documents start at the sorted positions `doc_starts`.

  Allowed starts: each document's start and its multiples of seq_len inside it. The first
  window starts at the first allowed start; each next one at the first allowed start >= the
  previous start + seq_len; windows that would run past the end are dropped.
  """
  doc_starts = np.asarray(doc_starts, np.int64)
  lengths = np.diff(np.append(doc_starts, num_tokens))
  pieces = -(-lengths // seq_len)  # allowed starts per document
  doc = np.repeat(np.arange(len(doc_starts)), pieces)
  first = np.cumsum(pieces) - pieces  # the index of each document's first allowed start
  allowed = doc_starts[doc] + (np.arange(len(doc)) - first[doc]) * seq_len
  starts = allowed[_chain(np.searchsorted(allowed, allowed + seq_len))]
  return starts[starts + seq_len + 1 <= num_tokens]


@functools.lru_cache(maxsize=16)
def _aligned_table(paths: tuple[str, ...], sizes: tuple[int, ...], bos_id: int,
                   seq_len: int) -> np.ndarray:
  """`aligned_starts` of a stream, read-only, computed once per process (`sizes`: the
  stream's shard offsets, so a rewritten shard is not served stale)."""
  del sizes  # only part of the cache key
  stream = TokenStream(paths)
  table = aligned_starts(document_starts(stream, bos_id), len(stream), seq_len)
  table.setflags(write=False)
  return table


class SourceWindows:
  """One source's training windows: its stream, and the first token of the window that its
  j-th sample reads (a stride layout, or document-aligned with `bos_id`). Picklable."""

  def __init__(self, files: Sequence[str], seq_len: int, seed: int, bos_id: int | None = None):
    self.stream = TokenStream(files)
    self.seq_len, self.seed, self.bos_id = seq_len, seed, bos_id
    self.table = None
    if bos_id is None:
      self.num_windows, self.max_offset = window_layout(len(self.stream), seq_len)
      return
    self.table = _aligned_table(self.stream.paths, self.stream.starts, int(bos_id), seq_len)
    self.num_windows, self.max_offset = len(self.table), 0
    if not self.num_windows:
      raise ValueError(f"data.align_to_bos: the train split ({len(self.stream)} tokens) holds "
                       f"no window of data.seq_len={seq_len} + 1 tokens after a "
                       f"data.bos_id={bos_id} token")

  def starts(self, sample_ids: Sequence[int]) -> np.ndarray:
    """int64[len(sample_ids)]: the first token of each of these samples' windows."""
    if self.table is None:
      return window_starts(sample_ids, self.seed, self.num_windows, self.max_offset,
                           self.seq_len)
    return self.table[shuffled_windows(sample_ids, self.seed, self.num_windows, 0)[0]]


def process_rows(global_batch_size: int, process_index: int, process_count: int) -> range:
  """The rows of every global batch that process `process_index` of `process_count` reads."""
  if not 0 <= process_index < process_count:
    raise ValueError(f"process_index={process_index} must lie in [0, {process_count})")
  if global_batch_size % process_count:
    raise ValueError(f"the global batch size {global_batch_size} must be divisible by the "
                     f"number of processes {process_count}")
  per_process = global_batch_size // process_count
  return range(process_index * per_process, (process_index + 1) * per_process)


class TrainBatches:
  """step -> this process's rows of the global batch at `step`, as int32 inputs/targets.

  `files`: the train shards; `bos_id`: document-aligned windows (`data.align_to_bos`);
  `mixture`: ((name, weight, files), ...) of a mixture's sources, read instead of `files`.
  A picklable callable (the token streams reopen their memmaps in each Grain worker).
  """

  def __init__(self, files: Sequence[str], seq_len: int, global_batch_size: int, seed: int,
               rows: range, *, bos_id: int | None = None,
               mixture: Sequence[tuple[str, float, Sequence[str]]] | None = None):
    self.seq_len, self.global_batch_size, self.seed, self.rows = (
        seq_len, global_batch_size, seed, rows)
    self.bos_id, self.mixture = bos_id, None
    if mixture is None:
      self.sources, self.draw = [SourceWindows(files, seq_len, seed, bos_id)], None
    else:
      self.mixture = [(name, float(weight), tuple(f)) for name, weight, f in mixture]
      self.sources = [SourceWindows(f, seq_len, mixture_lib.source_seed(seed, name), bos_id)
                      for name, _, f in self.mixture]
      self.draw = mixture_lib.Draw([w for _, w, _ in self.mixture], seed)

  @property
  def stream(self) -> TokenStream:
    """The first source's stream (the only one outside a mixture), as its windows' layout."""
    return self.sources[0].stream

  @property
  def num_windows(self) -> int:
    return self.sources[0].num_windows

  @property
  def max_offset(self) -> int:
    return self.sources[0].max_offset

  def picks(self, sample_ids: Sequence[int]) -> list[tuple[int, int]]:
    """(source, sample of that source) of each sample of the run."""
    if self.draw is None:
      return [(0, int(i)) for i in sample_ids]
    return [self.draw(i) for i in sample_ids]

  def __call__(self, step: int) -> dict[str, np.ndarray]:
    base = int(step) * self.global_batch_size
    picks = self.picks([base + r for r in self.rows])
    windows_bt = np.empty((len(picks), self.seq_len + 1), dtype=np.int32)
    for k, source in enumerate(self.sources):
      rows = [r for r, (s, _) in enumerate(picks) if s == k]
      if not rows:
        continue
      for r, start in zip(rows, source.starts([picks[r][1] for r in rows])):
        windows_bt[r] = source.stream.read(start, start + self.seq_len + 1)
    return {"inputs": windows_bt[:, :-1], "targets": windows_bt[:, 1:]}

  def order(self) -> dict:
    """The settings that fix the data order, as an iterator state records them."""
    out = {"seed": self.seed, "seq_len": self.seq_len,
           "global_batch_size": self.global_batch_size,
           "num_tokens": sum(len(s.stream) for s in self.sources)}
    if self.bos_id is not None:
      out["align_bos"] = int(self.bos_id)
    if self.mixture is not None:
      out["mixture"] = [[name, weight, len(s.stream)]
                        for (name, weight, _), s in zip(self.mixture, self.sources)]
    return out


def _ensure_absl_flags_parsed() -> None:
  """Grain's worker processes read absl flags; outside an absl app (tests, notebooks) nobody
  parsed them, so mark the defaults as parsed."""
  from absl import flags
  if not flags.FLAGS.is_parsed():
    flags.FLAGS.mark_as_parsed()


class TrainIterator:
  """An endless iterator of training batches with a JSON-serialisable state.

  The state is the next step (plus the settings that fix the data order, checked on restore).
  `set_state` rebuilds the Grain pipeline at that step, so a restored iterator yields exactly
  the batches an uninterrupted one would, whatever the number of processes or workers.
  """

  def __init__(self, batches: TrainBatches, *, start_step: int = 0, worker_count: int = 0,
               num_threads: int = 2, prefetch: int = 8):
    self.batches = batches
    self.worker_count, self.num_threads, self.prefetch = worker_count, num_threads, prefetch
    self.step = start_step
    self._it = None  # Grain starts lazily, so a restore right after construction costs nothing

  def _start(self) -> None:
    grain = _grain()
    ds = grain.MapDataset.range(self.step, _NO_END).map(self.batches)
    ds = ds.to_iter_dataset(grain.ReadOptions(num_threads=self.num_threads,
                                              prefetch_buffer_size=self.prefetch))
    if self.worker_count > 0:
      _ensure_absl_flags_parsed()
      ds = ds.mp_prefetch(grain.MultiprocessingOptions(num_workers=self.worker_count))
    self._it = iter(ds)

  def __iter__(self) -> "TrainIterator":
    return self

  def __next__(self) -> dict[str, np.ndarray]:
    if self._it is None:
      self._start()
    batch = next(self._it)
    self.step += 1
    return batch

  def _order(self) -> dict:
    return self.batches.order()

  def get_state(self) -> dict:
    """{"version", "step", "seed", "seq_len", "global_batch_size", "num_tokens"}, plus
    "align_bos" for document-aligned windows and "mixture" ([name, weight, train tokens] per
    source) for a mixture."""
    return {"version": STATE_VERSION, "step": self.step, **self._order()}

  def set_state(self, state: dict, strict: bool = True) -> None:
    """Continues at `state["step"]`. With `strict`, a state saved under another seed, sequence
    length, batch size or training data is refused (its batches could not be reproduced);
    `strict=False` continues at the saved step anyway (for resumes that change the config)."""
    if state.get("version") != STATE_VERSION:
      raise ValueError(f"data iterator state version {state.get('version')!r} is not "
                       f"{STATE_VERSION}")
    differ = {k: (state.get(k), v) for k, v in self._order().items() if state.get(k) != v}
    if differ and strict:
      raise ValueError("the saved data iterator state belongs to a different data order "
                       f"(saved, now): {differ}")
    self.close()
    self.step = int(state["step"])

  def close(self) -> None:
    """Stops Grain's prefetch threads / worker processes."""
    close = getattr(self._it, "close", None)
    if close is not None:
      close()
    self._it = None


def train_iterator(spec, *, seq_len: int, global_batch_size: int, seed: int,
                   process_index: int = 0, process_count: int = 1, worker_count: int = 0,
                   start_step: int = 0, num_threads: int = 2,
                   prefetch: int = 8) -> TrainIterator:
  """Training batches over `spec.train_files`: {"inputs", "targets"}: int32[B // P, seq_len].

  `seed` (an int >= 0) and the step fix the data; `process_index` of `process_count` picks the
  rows; `worker_count > 0` runs the gathering in Grain worker processes; `num_threads` and
  `prefetch` set Grain's thread prefetch (batches read ahead). A `mixture.MixtureSpec` adds its
  sources (a mixture) and `align_bos` (document-aligned windows).
  """
  if not (isinstance(seed, (int, np.integer)) and seed >= 0):
    raise ValueError(f"seed={seed!r} must be an integer >= 0")
  if global_batch_size <= 0 or seq_len <= 0:
    raise ValueError(f"global_batch_size={global_batch_size} and seq_len={seq_len} must be > 0")
  rows = process_rows(global_batch_size, process_index, process_count)
  sources = getattr(spec, "sources", ())
  mixture = [(s.name, s.weight, s.spec.train_files) for s in sources] if sources else None
  batches = TrainBatches(spec.train_files, seq_len, global_batch_size, int(seed), rows,
                         bos_id=getattr(spec, "align_bos", None), mixture=mixture)
  return TrainIterator(batches, start_step=start_step, worker_count=worker_count,
                       num_threads=num_threads, prefetch=prefetch)


# ------------------------------------------------------------------------------------------
# Evaluation.

def _split_files(spec, split: str) -> tuple[str, ...]:
  if split == "val":
    return spec.val_files
  if split == "train":
    return spec.train_files
  if split in spec.extra_val:
    return spec.extra_val[split]
  source_splits = mixture_lib.splits(spec)
  if split in source_splits:
    return source_splits[split]
  raise ValueError(f"unknown evaluation split {split!r}; this data has "
                   f"{['train', 'val', *spec.extra_val, *source_splits]}")


def _eval_layout(num_tokens: int, split: str, seq_len: int, batch_size: int,
                 max_tokens: int | None) -> tuple[int, int, int]:
  """(scored targets M, windows, batches) of an evaluation."""
  if num_tokens < seq_len + 1:
    raise ValueError(f"data.seq_len={seq_len} is too long for the {split} split "
                     f"({num_tokens} tokens; a window needs seq_len + 1)")
  if max_tokens is not None and max_tokens <= 0:
    raise ValueError(f"max_tokens={max_tokens} must be > 0 or None (the whole split)")
  if batch_size <= 0:
    raise ValueError(f"batch_size={batch_size} must be > 0")
  scored = num_tokens - 1 if max_tokens is None else min(max_tokens, num_tokens - 1)
  windows = math.ceil(scored / seq_len)
  return scored, windows, math.ceil(windows / batch_size)


def num_eval_batches(spec, split: str, seq_len: int, batch_size: int,
                     max_tokens: int | None = None) -> int:
  """How many batches `eval_batches` yields with these arguments."""
  stream = TokenStream(_split_files(spec, split))
  return _eval_layout(len(stream), split, seq_len, batch_size, max_tokens)[2]


def eval_batches(spec, split: str = "val", *, seq_len: int, batch_size: int,
                 max_tokens: int | None = None, process_index: int = 0,
                 process_count: int = 1) -> Iterator[dict[str, np.ndarray]]:
  """Evaluation batches of a split: {"inputs", "targets"}: int32[b // P, seq_len] and
  {"weights"}: float32[b // P, seq_len], 1 on scored targets and 0 on padding.

  Window j scores targets j * seq_len ... (j + 1) * seq_len - 1 of the split (target k is token
  k + 1); over all batches and processes, the first M targets are scored exactly once.
  """
  stream = TokenStream(_split_files(spec, split))
  scored, windows, num_batches = _eval_layout(len(stream), split, seq_len, batch_size,
                                              max_tokens)
  rows = process_rows(batch_size, process_index, process_count)
  for j in range(num_batches):
    first = min(j * batch_size + rows.start, windows)  # this process's windows [first, last)
    last = min(j * batch_size + rows.stop, windows)
    n = last - first
    block = np.zeros(len(rows) * seq_len + 1, dtype=np.int32)
    if n:
      span = stream.read(first * seq_len, min(last * seq_len + 1, len(stream)))
      block[:len(span)] = span
    inputs_bt = block[:-1].reshape(len(rows), seq_len)
    targets_bt = block[1:].reshape(len(rows), seq_len)
    target_ids_bt = (first * seq_len + np.arange(len(rows) * seq_len)).reshape(len(rows), seq_len)
    weights_bt = ((target_ids_bt < scored) & (np.arange(len(rows))[:, None] < n))
    yield {"inputs": inputs_bt.copy(), "targets": targets_bt.copy(),
           "weights": weights_bt.astype(np.float32)}
