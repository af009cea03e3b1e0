"""Document-aligned training windows (`data.align_to_bos`): every window starts at a document or
k x seq_len inside one, the window starts match a token-by-token Python reference, an epoch
covers every token at most once and drops only what pipeline.py documents, the order is a pure
function of (seed, step) and a restored iterator continues exactly."""

import dataclasses
import json
import pickle

import numpy as np
import pytest
from ml_collections import config_dict

from jaxgpt import config as config_lib
from jaxgpt import data
from jaxgpt.data import mixture, pipeline
from jaxgpt.errors import ConfigError
from tests.helpers import assert_same_batches, take

T, B, BOS = 16, 8, 0


def reference_starts(tokens, bos_id: int, seq_len: int) -> list[int]:
  """The aligned window starts by walking the stream token by token (independent of the
  vectorised pipeline): allowed starts are documents' starts and k x seq_len inside them."""
  allowed, doc = [], None
  for p, tok in enumerate(tokens):
    if tok == bos_id:
      doc = p
    allowed.append(doc is not None and (p - doc) % seq_len == 0)
  out, p = [], 0
  while p < len(tokens) and not allowed[p]:
    p += 1
  while p + seq_len + 1 <= len(tokens):
    out.append(p)
    p += seq_len
    while p < len(tokens) and not allowed[p]:
      p += 1
  return out


def doc_stream(rng, num_docs: int, head: int = 5) -> np.ndarray:
  """Tokens whose value is their position + 1 except at document starts (BOS = 0): any window
  shows where it came from. Documents of 2 .. 3T tokens, a few much longer; `head` tokens before
  the first document."""
  lengths = rng.integers(2, 3 * T, num_docs)
  lengths[rng.random(num_docs) < 0.1] *= 4
  tokens = np.arange(1, head + lengths.sum() + 1)
  tokens[head + np.cumsum(lengths) - lengths] = BOS
  return tokens


def write_spec(folder, tokens, sizes) -> data.DataSpec:
  """Shards of `tokens` cut at `sizes`, as train and val."""
  folder.mkdir(parents=True, exist_ok=True)
  paths, start = [], 0
  for k, n in enumerate([*sizes, len(tokens) - sum(sizes)]):
    paths.append(str(folder / f"train_{k:06d}.bin"))
    data.write_shard(paths[-1], tokens[start:start + n])
    start += n
  return data.DataSpec(name="shards", train_files=tuple(paths), val_files=tuple(paths),
                       extra_val={}, vocab_size=None, tokenizer=None, token_bytes=None,
                       split_tokens={"train": len(tokens), "val": len(tokens)}, split_bytes={})


@pytest.fixture
def stream(tmp_path):
  """(tokens, aligned spec): about 1,700 tokens in three shards (one edge inside a document)."""
  tokens = doc_stream(np.random.default_rng(0), 60)
  spec = write_spec(tmp_path / "shards", tokens, (700, 500))
  return tokens, mixture.training_spec(spec, dict(align_to_bos=True, bos_id=BOS))


def row_start(row: np.ndarray) -> int:
  """The stream position of a row's first token (tokens are position + 1 except BOS)."""
  nonzero = np.flatnonzero(row)
  return int(row[nonzero[0]]) - 1 - int(nonzero[0])


@pytest.mark.parametrize("seed", range(40))
def test_vectorised_starts_equal_the_reference(seed):
  rng = np.random.default_rng(seed)
  n, seq_len = int(rng.integers(1, 300)), int(rng.integers(1, 24))
  tokens = rng.integers(0, int(rng.integers(2, 12)), n)  # BOS = 0 every 2 to 11 tokens on average
  got = pipeline.aligned_starts(np.flatnonzero(tokens == BOS), n, seq_len)
  assert got.tolist() == reference_starts(tokens.tolist(), BOS, seq_len)


def test_document_starts_reads_across_blocks_and_shards(stream):
  tokens, spec = stream
  s = data.TokenStream(spec.train_files)
  expected = np.flatnonzero(tokens == BOS)
  for block in (7, 700, 1 << 24):
    np.testing.assert_array_equal(pipeline.document_starts(s, BOS, block), expected)


def test_every_window_starts_at_a_document_or_k_seq_len_inside_one(stream):
  tokens, spec = stream
  docs = np.flatnonzero(tokens == BOS)
  it = data.train_iterator(spec, seq_len=T, global_batch_size=B, seed=0)
  table = pipeline.aligned_starts(docs, len(tokens), T)
  assert table.tolist() == reference_starts(tokens.tolist(), BOS, T)
  seen = 0
  for batch in take(it, 2 * len(table) // B + 1):  # two epochs and more
    np.testing.assert_array_equal(batch["targets"][:, :-1], batch["inputs"][:, 1:])
    for row_in, row_tg in zip(batch["inputs"], batch["targets"]):
      start = row_start(row_in)
      doc = docs[np.searchsorted(docs, start, side="right") - 1]
      assert (start - doc) % T == 0
      np.testing.assert_array_equal(row_in, tokens[start:start + T])
      np.testing.assert_array_equal(row_tg, tokens[start + 1:start + T + 1])
      seen += start in set(table.tolist())
  assert seen == (2 * len(table) // B + 1) * B


def test_an_epoch_covers_each_token_once_except_the_documented_drops(stream):
  tokens, spec = stream
  batches = pipeline.TrainBatches(spec.train_files, T, B, 3, range(B), bos_id=BOS)
  windows = batches.sources[0]
  w = windows.num_windows
  docs = np.flatnonzero(tokens == BOS)
  epochs = [windows.starts(range(e * w, (e + 1) * w)).tolist() for e in range(2)]
  for starts in epochs:
    assert sorted(starts) == windows.table.tolist()  # every window once per epoch
  assert epochs[0] != epochs[1]  # shuffled anew
  covered = np.zeros(len(tokens), int)
  for s in windows.table:
    covered[s:s + T] += 1
  assert covered.max() == 1 and covered.sum() == w * T  # disjoint windows
  doc_of = docs[np.maximum(np.searchsorted(docs, np.arange(len(tokens)), side="right") - 1, 0)]
  allowed = (np.arange(len(tokens)) >= docs[0]) & ((np.arange(len(tokens)) - doc_of) % T == 0)
  last_end = int(windows.table[-1]) + T
  edges = np.flatnonzero(np.diff(np.concatenate([[1], covered, [1]])))
  for a, b in zip(edges[::2], edges[1::2]):  # the maximal runs [a, b) of dropped tokens
    if a == 0:
      assert b == docs[0]  # the tokens before the first document
    elif b == len(tokens):
      assert a == last_end  # the tail after the last window
    else:  # a document that began inside the window ending at a, up to its next allowed start
      assert a - T < doc_of[a] < a and allowed[b] and not allowed[a:b].any(), (a, b)
  table = set(windows.table.tolist())
  for doc, end in zip(docs, [*docs[1:], len(tokens)]):
    if doc in table:
      assert covered[doc:min(end, last_end)].all()  # a window's document loses no token


def test_same_seed_and_step_same_batch(stream):
  _, spec = stream
  run = take(data.train_iterator(spec, seq_len=T, global_batch_size=B, seed=7), 8)
  again = take(data.train_iterator(spec, seq_len=T, global_batch_size=B, seed=7), 8)
  assert_same_batches(run, again)
  late = take(data.train_iterator(spec, seq_len=T, global_batch_size=B, seed=7, start_step=5),
               3)
  assert_same_batches(run[5:], late)
  direct = pipeline.TrainBatches(spec.train_files, T, B, 7, range(B), bos_id=BOS)
  assert_same_batches(run[4:5], [direct(4)])
  assert_same_batches(run[2:3], [pickle.loads(pickle.dumps(direct))(2)])  # as Grain workers get it
  other = take(data.train_iterator(spec, seq_len=T, global_batch_size=B, seed=8), 8)
  assert not all((a["inputs"] == b["inputs"]).all() for a, b in zip(run, other))


def test_restored_iterator_equals_an_uninterrupted_one(stream):
  _, spec = stream
  ref = take(data.train_iterator(spec, seq_len=T, global_batch_size=B, seed=3), 30)
  it = data.train_iterator(spec, seq_len=T, global_batch_size=B, seed=3)
  take(it, 17)
  state = json.loads(json.dumps(it.get_state()))  # what a checkpoint stores
  assert state["step"] == 17 and state["align_bos"] == BOS
  fresh = data.train_iterator(spec, seq_len=T, global_batch_size=B, seed=3)
  fresh.set_state(state)
  assert_same_batches(take(fresh, 13), ref[17:])
  unaligned = {k: v for k, v in state.items() if k != "align_bos"}
  with pytest.raises(ValueError, match="different data order"):
    fresh.set_state(unaligned)  # a state of stride windows is another order


def test_process_slices_form_the_global_batch(stream):
  _, spec = stream
  one = take(data.train_iterator(spec, seq_len=T, global_batch_size=B, seed=1), 4)
  parts = [take(data.train_iterator(spec, seq_len=T, global_batch_size=B, seed=1,
                                     process_index=p, process_count=2), 4) for p in range(2)]
  for step in range(4):
    np.testing.assert_array_equal(
        np.concatenate([parts[0][step]["inputs"], parts[1][step]["inputs"]]),
        one[step]["inputs"])


def test_a_stream_without_documents_is_an_error(tmp_path):
  spec = write_spec(tmp_path, np.arange(1, 200), ())
  with pytest.raises(ValueError, match="data.bos_id=0"):
    data.train_iterator(mixture.training_spec(spec, dict(align_to_bos=True, bos_id=BOS)),
                        seq_len=T, global_batch_size=B, seed=0)


def test_training_spec_leaves_plain_specs_alone(stream, tmp_path):
  tokens, _ = stream
  spec = write_spec(tmp_path / "plain", tokens, ())
  assert mixture.training_spec(spec, dict(align_to_bos=False, bos_id=BOS)) is spec
  aligned = mixture.training_spec(spec, dict(align_to_bos=True, bos_id=BOS))
  assert aligned.align_bos == BOS and aligned.train_files == spec.train_files
  assert aligned.files("val") == spec.val_files and not aligned.sources


def test_align_without_bos_id_is_one_line_naming_both_keys():
  c = config_lib.base_config()
  c.data.align_to_bos = True
  with pytest.raises(ConfigError) as e:
    config_lib.validate(c)
  msg = str(e.value)
  assert "\n" not in msg and "data.align_to_bos=True" in msg and "data.bos_id" in msg
  with pytest.raises(ConfigError, match="data.align_to_bos='yes' must be True or False"):
    mixture.check_train_keys(dict(align_to_bos="yes", bos_id=1))
  mixture.check_train_keys(config_dict.ConfigDict(dict(align_to_bos=True, bos_id=1)))
  # The data's own boundary token will do: data.document_separator="bos" or a prepared folder.
  mixture.check_train_keys(dict(align_to_bos=True, document_separator="bos"))
  mixture.check_train_keys(dict(align_to_bos=True, prepared_dir="corpus"))


def test_align_reads_the_data_s_own_boundary_token(tmp_path):
  spec = dataclasses.replace(write_spec(tmp_path, np.arange(1, 200), ()), bos_id=BOS)
  assert mixture.training_spec(spec, dict(align_to_bos=True)).align_bos == BOS
  with pytest.raises(ConfigError, match="has no token that starts each document"):
    mixture.training_spec(dataclasses.replace(spec, bos_id=None), dict(align_to_bos=True))
