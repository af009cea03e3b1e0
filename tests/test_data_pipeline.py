"""Training and evaluation batches: order a pure function of (seed, step), exact resumes,
disjoint per-process slices, and evaluation covering every target token exactly once."""

import json

import numpy as np
import pytest

from jaxgpt import data
from jaxgpt.data import pipeline, shakespeare
from tests.conftest_data import byte_spec, data_dir, split_tokens, synth  # noqa: F401

T, B = 16, 8


def _take(it, n):
  return [next(it) for _ in range(n)]


def _assert_same(batches_a, batches_b):
  assert len(batches_a) == len(batches_b)
  for a, b in zip(batches_a, batches_b):
    assert a.keys() == b.keys()
    for k in a:
      np.testing.assert_array_equal(a[k], b[k])


def test_batch_shapes_and_shifted_targets(synth):
  it = data.train_iterator(synth, seq_len=T, global_batch_size=B, seed=0)
  tokens = split_tokens(synth, "train")
  for batch in _take(it, 5):
    assert batch["inputs"].shape == batch["targets"].shape == (B, T)
    assert batch["inputs"].dtype == batch["targets"].dtype == np.int32
    np.testing.assert_array_equal(batch["targets"][:, :-1], batch["inputs"][:, 1:])
    # Position shards: a row is a contiguous run of the stream, also across shard edges.
    for row_in, row_tg in zip(batch["inputs"], batch["targets"]):
      start = int(row_in[0])
      np.testing.assert_array_equal(row_in, tokens[start:start + T])
      np.testing.assert_array_equal(row_tg, tokens[start + 1:start + T + 1])


def test_order_is_a_pure_function_of_seed_and_step(synth):
  run = _take(data.train_iterator(synth, seq_len=T, global_batch_size=B, seed=7), 12)
  again = _take(data.train_iterator(synth, seq_len=T, global_batch_size=B, seed=7), 12)
  _assert_same(run, again)
  late = _take(data.train_iterator(synth, seq_len=T, global_batch_size=B, seed=7,
                                   start_step=9), 3)
  _assert_same(run[9:], late)
  direct = pipeline.TrainBatches(synth.train_files, T, B, 7, range(B))
  _assert_same(run[4:5], [direct(4)])
  other = _take(data.train_iterator(synth, seq_len=T, global_batch_size=B, seed=8), 12)
  assert not all((a["inputs"] == b["inputs"]).all() for a, b in zip(run, other))


def test_each_epoch_visits_every_window_once(synth):
  n = len(data.TokenStream(synth.train_files))
  num_windows, max_offset = pipeline.window_layout(n, T)
  assert max_offset == T - 1 and num_windows == (n - T) // T
  for epoch in range(3):
    ids = range(epoch * num_windows, (epoch + 1) * num_windows)
    starts = pipeline.window_starts(ids, 5, num_windows, max_offset, T)
    offset = pipeline.epoch_params(5, epoch, max_offset)[1]
    assert sorted((starts - offset) // T) == list(range(num_windows))
    assert ((starts - offset) % T == 0).all() and starts.max() + T + 1 <= n


def test_state_round_trip_resumes_exactly(synth):
  ref = _take(data.train_iterator(synth, seq_len=T, global_batch_size=B, seed=3), 10)
  it = data.train_iterator(synth, seq_len=T, global_batch_size=B, seed=3)
  _take(it, 6)
  state = json.loads(json.dumps(it.get_state()))  # what a checkpoint stores
  assert state["step"] == 6
  fresh = data.train_iterator(synth, seq_len=T, global_batch_size=B, seed=3)
  fresh.set_state(state)
  _assert_same(_take(fresh, 4), ref[6:])
  it.set_state({**state, "step": 2})  # rewinding a used iterator works too
  _assert_same(_take(it, 2), ref[2:4])
  with pytest.raises(ValueError, match="different data order"):
    fresh.set_state({**state, "seed": 4})
  fresh.set_state({**state, "seed": 4}, strict=False)


def test_process_slices_are_disjoint_and_form_the_global_batch(synth):
  one = _take(data.train_iterator(synth, seq_len=T, global_batch_size=B, seed=1), 6)
  parts = [_take(data.train_iterator(synth, seq_len=T, global_batch_size=B, seed=1,
                                     process_index=p, process_count=2), 6) for p in range(2)]
  for step in range(6):
    for k in ("inputs", "targets"):
      assert parts[0][step][k].shape == (B // 2, T)
      np.testing.assert_array_equal(
          np.concatenate([parts[0][step][k], parts[1][step][k]]), one[step][k])
    starts = [set(parts[p][step]["inputs"][:, 0].tolist()) for p in range(2)]
    assert not starts[0] & starts[1]


def test_resume_with_a_different_number_of_processes(synth):
  one = data.train_iterator(synth, seq_len=T, global_batch_size=B, seed=2)
  _take(one, 5)
  state = one.get_state()
  expected = _take(one, 3)
  parts = []
  for p in range(4):
    it = data.train_iterator(synth, seq_len=T, global_batch_size=B, seed=2, process_index=p,
                             process_count=4)
    it.set_state(state)
    parts.append(_take(it, 3))
  for step in range(3):
    got = np.concatenate([parts[p][step]["inputs"] for p in range(4)])
    np.testing.assert_array_equal(got, expected[step]["inputs"])


def test_grain_worker_processes_give_the_same_batches(synth):
  ref = _take(data.train_iterator(synth, seq_len=T, global_batch_size=B, seed=4), 4)
  it = data.train_iterator(synth, seq_len=T, global_batch_size=B, seed=4, worker_count=1)
  try:
    _assert_same(_take(it, 4), ref)
  finally:
    it.close()


def test_bad_arguments(synth):
  with pytest.raises(ValueError, match="divisible by the number of processes 3"):
    data.train_iterator(synth, seq_len=T, global_batch_size=B, seed=0, process_count=3)
  with pytest.raises(ValueError, match="seed"):
    data.train_iterator(synth, seq_len=T, global_batch_size=B, seed=-1)
  with pytest.raises(ValueError, match="data.seq_len=20000 is too long for the train split"):
    data.train_iterator(synth, seq_len=20000, global_batch_size=B, seed=0)
  with pytest.raises(ValueError, match="data.seq_len=400 is too long for the folio split"):
    list(data.eval_batches(synth, "folio", seq_len=400, batch_size=4))
  with pytest.raises(ValueError, match="unknown evaluation split 'test'"):
    list(data.eval_batches(synth, "test", seq_len=T, batch_size=4))


# ------------------------------------------------------------------------------------------
# Evaluation.

def _eval(spec, split, *, seq_len, batch_size, max_tokens, process_count=1):
  """All batches of all processes, the processes' rows concatenated per batch."""
  per_process = [list(data.eval_batches(spec, split, seq_len=seq_len, batch_size=batch_size,
                                        max_tokens=max_tokens, process_index=p,
                                        process_count=process_count))
                 for p in range(process_count)]
  return [{k: np.concatenate([pp[j][k] for pp in per_process]) for k in per_process[0][j]}
          for j in range(len(per_process[0]))]


@pytest.mark.parametrize("split, seq_len, batch_size, max_tokens, process_count", [
    ("val", 16, 4, None, 1),
    ("val", 16, 4, None, 2),
    ("val", 7, 6, None, 3),  # windows cross the shard edge; the last batch is mostly padding
    ("folio", 16, 4, None, 2),
    ("val", 16, 4, 100, 1),  # a cap that is not a multiple of seq_len
    ("val", 16, 4, 64, 2),
    ("val", 16, 4, 10**9, 1),  # a cap beyond the split is the whole split
])
def test_eval_covers_each_target_once(synth, split, seq_len, batch_size, max_tokens,
                                      process_count):
  tokens = split_tokens(synth, split)
  scored = len(tokens) - 1 if max_tokens is None else min(max_tokens, len(tokens) - 1)
  batches = _eval(synth, split, seq_len=seq_len, batch_size=batch_size, max_tokens=max_tokens,
                  process_count=process_count)
  assert len(batches) == data.num_eval_batches(synth, split, seq_len, batch_size, max_tokens)
  for b in batches:  # one shape for every batch: one compiled evaluation step
    assert b["inputs"].shape == b["targets"].shape == b["weights"].shape == (batch_size, seq_len)
    assert b["inputs"].dtype == np.int32 and b["weights"].dtype == np.float32
    assert set(np.unique(b["weights"])) <= {0.0, 1.0}
  weights = np.concatenate([b["weights"].reshape(-1) for b in batches])
  targets = np.concatenate([b["targets"].reshape(-1) for b in batches])
  inputs = np.concatenate([b["inputs"].reshape(-1) for b in batches])
  assert weights.sum() == scored
  np.testing.assert_array_equal(targets[weights > 0], tokens[1:scored + 1])
  np.testing.assert_array_equal(inputs[weights > 0], tokens[:scored])


def test_eval_on_the_real_corpus(byte_spec):
  tokens = split_tokens(byte_spec, "val")
  batches = list(data.eval_batches(byte_spec, "val", seq_len=1024, batch_size=32))
  weights = np.concatenate([b["weights"].reshape(-1) for b in batches])
  targets = np.concatenate([b["targets"].reshape(-1) for b in batches])
  assert weights.sum() == len(tokens) - 1 == byte_spec.split_bytes["val"] - 1
  np.testing.assert_array_equal(targets[weights > 0], tokens[1:])
  capped = list(data.eval_batches(byte_spec, "val", seq_len=256, batch_size=8,
                                  max_tokens=4096))
  assert len(capped) == 2 and sum(b["weights"].sum() for b in capped) == 4096


def test_train_batches_on_the_real_corpus(byte_spec, data_dir):
  train_text = shakespeare.read_split_text(data_dir / "shakespeare", "train")
  it = data.train_iterator(byte_spec, seq_len=256, global_batch_size=4, seed=0)
  for row in next(it)["inputs"]:
    assert byte_spec.tokenizer.decode(row) in train_text
  assert it.get_state()["num_tokens"] == byte_spec.split_tokens["train"]
