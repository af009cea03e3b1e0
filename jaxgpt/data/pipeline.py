"""Training batches (a Grain pipeline) and evaluation batches over token shards.

Training. The train shards form one token stream of N tokens. An epoch is a set of W windows
of seq_len + 1 tokens at stride seq_len (inputs are a window's first seq_len tokens, targets
its last seq_len), starting at a random offset drawn per epoch, so window edges move between
epochs. Sample i of the run (i = step * B + row, B the global batch) lies in epoch i // W, at
the window that Grain's `index_shuffle` (a seeded permutation of [0, W), computed per index
without materialising it) maps i % W to. The data order is therefore a pure function of
(seed, step): no state but the step, a resume is exact, and it does not depend on the number
of processes. Process p of P reads rows [p B / P, (p + 1) B / P) of every global batch.

Speed: the Grain record is a whole batch (index = step), gathered with numpy slices of the
memmapped shards, rather than one record per row: a per-row pipeline pays Grain's per-record
cost B times per step (measured by scripts/bench_input.py). Grain's thread prefetch overlaps
reading with training; `worker_count > 0` moves the work into Grain worker processes.

Evaluation. Non-overlapping windows of seq_len from the start of a split cover its target
tokens (all tokens but the first) in order; `max_tokens` caps the number of scored targets
(the fixed evaluation set of `train.eval_tokens`), `None` scores every target exactly once.
Every batch has the same shape; padding rows and positions carry weight 0, so one compiled
evaluation step serves all batches.
"""

from __future__ import annotations

import functools
import hashlib
import math
from typing import Iterator, Sequence

import numpy as np

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


def window_starts(sample_ids: Sequence[int], seed: int, num_windows: int, max_offset: int,
                  seq_len: int) -> np.ndarray:
  """int64[len(sample_ids)]: the first token of each sample's window in the stream."""
  shuffle = _grain().experimental.index_shuffle
  starts = np.empty(len(sample_ids), dtype=np.int64)
  for r, i in enumerate(sample_ids):
    epoch, pos = divmod(int(i), num_windows)
    perm_seed, offset = epoch_params(seed, epoch, max_offset)
    window = shuffle(pos, num_windows - 1, perm_seed, _SHUFFLE_ROUNDS)
    starts[r] = offset + window * seq_len
  return starts


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

  A picklable callable (the token stream reopens its memmaps in each Grain worker).
  """

  def __init__(self, files: Sequence[str], seq_len: int, global_batch_size: int, seed: int,
               rows: range):
    self.stream = TokenStream(files)
    self.seq_len, self.global_batch_size, self.seed, self.rows = (
        seq_len, global_batch_size, seed, rows)
    self.num_windows, self.max_offset = window_layout(len(self.stream), seq_len)

  def __call__(self, step: int) -> dict[str, np.ndarray]:
    base = int(step) * self.global_batch_size
    starts = window_starts([base + r for r in self.rows], self.seed, self.num_windows,
                           self.max_offset, self.seq_len)
    windows_bt = np.empty((len(starts), self.seq_len + 1), dtype=np.int32)
    for r, start in enumerate(starts):
      windows_bt[r] = self.stream.read(start, start + self.seq_len + 1)
    return {"inputs": windows_bt[:, :-1], "targets": windows_bt[:, 1:]}


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
    b = self.batches
    return {"seed": b.seed, "seq_len": b.seq_len, "global_batch_size": b.global_batch_size,
            "num_tokens": len(b.stream)}

  def get_state(self) -> dict:
    """{"version", "step", "seed", "seq_len", "global_batch_size", "num_tokens"}."""
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
  `prefetch` set Grain's thread prefetch (batches read ahead).
  """
  if not (isinstance(seed, (int, np.integer)) and seed >= 0):
    raise ValueError(f"seed={seed!r} must be an integer >= 0")
  if global_batch_size <= 0 or seq_len <= 0:
    raise ValueError(f"global_batch_size={global_batch_size} and seq_len={seq_len} must be > 0")
  rows = process_rows(global_batch_size, process_index, process_count)
  batches = TrainBatches(spec.train_files, seq_len, global_batch_size, int(seed), rows)
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
  raise ValueError(f"unknown evaluation split {split!r}; this data has "
                   f"{['train', 'val', *spec.extra_val]}")


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
