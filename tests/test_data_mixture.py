"""Mixtures of shard sources (`data.name = "mixture"`): realised proportions match the weights,
each source's samples come in rank order, the order is a pure function of (seed, step) and a
restored iterator continues exactly, each source's validation split is evaluated and logged on
its own by a real training run, and every config error is one line naming its key."""

import json
import math
from fractions import Fraction

import numpy as np
import pytest
from ml_collections import config_dict

from jaxgpt import config as config_lib
from jaxgpt import data
from jaxgpt.data import mixture, shards
from jaxgpt.data.tokenizer import train_bpe
from jaxgpt.errors import ConfigError
from tests.helpers import assert_same_batches, take

T, B = 16, 40


def write_source(root, name: str, train, val, max_shard_tokens: int = 700) -> dict:
  """A source's train and val shards under root/name; its data.mixture entry (no weight)."""
  folder = root / name
  folder.mkdir(parents=True)
  for split, tokens in (("train", train), ("val", val)):
    shards.write_split(folder, split, np.asarray(tokens), max_shard_tokens)
  return dict(name=name, train_pattern=str(folder / "train_*.bin"),
              val_pattern=str(folder / "val_*.bin"))


def data_config(sources, **keys) -> config_dict.ConfigDict:
  return config_dict.ConfigDict({**dict(name="mixture", mixture=tuple(sources), seq_len=T,
                                        tokenizer="byte"), **keys})


@pytest.fixture
def coded(tmp_path):
  """Three raw sources whose tokens say where they came from: source k, position p -> 10000 k + p
  (streams under 10000 tokens; Grain's index_shuffle is slow below a thousand windows)."""
  def make(weights, seed_dir="a"):
    root = tmp_path / seed_dir
    sizes = (9000, 5000, 7000)
    return [dict(write_source(root, f"s{k}", 10000 * k + np.arange(n),
                              10000 * k + np.arange(200), 3000), weight=w)
            for k, (n, w) in enumerate(zip(sizes, weights))]
  return make


def reference_counts(weights, picks) -> None:
  """Checks (k, j) picks against a counting loop: j is the number of earlier picks of k, and
  every prefix holds each source's share to within the tree's depth."""
  total, depth = sum(weights), math.ceil(math.log2(len(weights)))
  counts = [0] * len(weights)
  for n, (k, j) in enumerate(picks, 1):
    assert j == counts[k]
    counts[k] += 1
    assert all(abs(c - n * w / total) <= depth + 1e-9 for c, w in zip(counts, weights))


@pytest.mark.parametrize("weights", [(0.5, 0.3, 0.2), (0.7, 0.3), (1, 0, 3, 2.5, 0.01),
                                     (0.0, 1.0)])
def test_draw_holds_the_weights_and_ranks_each_source(weights):
  for seed in (0, 1):
    picks = [mixture.Draw(weights, seed)(i) for i in range(10_000)]
    reference_counts(weights, picks)
    share = np.bincount([k for k, _ in picks], minlength=len(weights)) / 10_000
    np.testing.assert_allclose(share, np.asarray(weights) / sum(weights), atol=0.01, rtol=0)
  if sum(w > 0 for w in weights) > 1:  # the seed moves the pattern
    assert ([mixture.Draw(weights, 0)(i) for i in range(50)]
            != [mixture.Draw(weights, 1)(i) for i in range(50)])


def test_draw_is_exact_far_into_a_run():
  """At i ~ 2^45 a sample's rank j in its source is still within the depth of i w_k (exact
  integer arithmetic, no float drift)."""
  weights = (0.1, 0.2, 0.7)
  draw = mixture.Draw(weights, 5)
  for i in range((1 << 45) + 3, (1 << 45) + 300):
    k, j = draw(i)
    assert abs(j - i * Fraction(weights[k])) <= 2


def test_batches_hold_the_weights_over_10000_windows(coded):
  weights = (0.5, 0.3, 0.2)
  spec = data.prepare(data_config(coded(weights)))
  it = data.train_iterator(spec, seq_len=T, global_batch_size=B, seed=4)
  batches = take(it, 10_000 // B)
  rows = np.concatenate([b["inputs"] for b in batches])
  share = np.bincount(rows[:, 0] // 10000, minlength=3) / len(rows)
  np.testing.assert_allclose(share, weights, atol=0.01, rtol=0)
  # Each row is the window its (source, rank) names, read from that source's stream.
  direct = it.batches
  for step in (0, 7, 249):
    picks = direct.picks(range(step * B, (step + 1) * B))
    for row, (k, j) in zip(batches[step]["inputs"], picks):
      start = direct.sources[k].starts([j])[0]
      np.testing.assert_array_equal(row, 10000 * k + np.arange(start, start + T))


def test_order_is_a_pure_function_of_seed_and_step(coded):
  spec = data.prepare(data_config(coded((0.6, 0.3, 0.1))))
  run = take(data.train_iterator(spec, seq_len=T, global_batch_size=B, seed=7), 6)
  again = take(data.train_iterator(spec, seq_len=T, global_batch_size=B, seed=7), 6)
  assert_same_batches(run, again)
  late = take(data.train_iterator(spec, seq_len=T, global_batch_size=B, seed=7, start_step=4),
              2)
  assert_same_batches(run[4:], late)
  other = take(data.train_iterator(spec, seq_len=T, global_batch_size=B, seed=8), 6)
  assert not all((a["inputs"] == b["inputs"]).all() for a, b in zip(run, other))


def test_restored_iterator_equals_an_uninterrupted_one(coded):
  spec = data.prepare(data_config(coded((0.6, 0.3, 0.1))))
  ref = take(data.train_iterator(spec, seq_len=T, global_batch_size=B, seed=3), 12)
  it = data.train_iterator(spec, seq_len=T, global_batch_size=B, seed=3)
  take(it, 5)
  state = json.loads(json.dumps(it.get_state()))  # what a checkpoint stores
  assert state["step"] == 5 and [s[0] for s in state["mixture"]] == ["s0", "s1", "s2"]
  fresh = data.train_iterator(spec, seq_len=T, global_batch_size=B, seed=3)
  fresh.set_state(state)
  assert_same_batches(take(fresh, 7), ref[5:])
  two = [data.train_iterator(spec, seq_len=T, global_batch_size=B, seed=3, process_index=p,
                             process_count=2) for p in range(2)]
  for part in two:
    part.set_state(state)
  for step, (a, b) in enumerate(zip(take(two[0], 3), take(two[1], 3))):
    np.testing.assert_array_equal(np.concatenate([a["inputs"], b["inputs"]]),
                                  ref[5 + step]["inputs"])
  reweighted = data.prepare(data_config(coded((0.5, 0.3, 0.2), "b")))
  with pytest.raises(ValueError, match="different data order"):
    data.train_iterator(reweighted, seq_len=T, global_batch_size=B, seed=3).set_state(state)


def test_aligned_mixture_windows_start_at_documents(tmp_path):
  """data.align_to_bos applies to every source (BOS = 0 every 10 tokens, 1 in source b)."""
  docs = np.arange(1, 801) % 10  # a document every 10 tokens (BOS = 0)
  sources = [dict(write_source(tmp_path, "a", docs, docs[:100]), weight=1.0),
             dict(write_source(tmp_path, "b", docs + 100 * (docs > 0), docs[:100]), weight=1.0)]
  spec = data.prepare(data_config(sources, align_to_bos=True, bos_id=0))
  assert spec.align_bos == 0
  batch = next(data.train_iterator(spec, seq_len=T, global_batch_size=B, seed=0))
  assert (batch["inputs"][:, 0] == 0).all()  # documents are shorter than a window
  rows = batch["inputs"][:, 1]
  assert set(rows.tolist()) == {1, 101}


def test_prepared_spec_and_per_source_splits(coded):
  spec = data.prepare(data_config(coded((0.5, 0.5, 0.0))))
  assert spec.name == "mixture" and [s.name for s in spec.sources] == ["s0", "s1", "s2"]
  assert spec.split_tokens["train"] == 21000 and spec.split_tokens["val/s1"] == 200
  assert mixture.val_weights(spec) == {"s0": 0.5, "s1": 0.5, "s2": 0.0}
  targets = np.concatenate([b["targets"][b["weights"] > 0]
                            for b in data.eval_batches(spec, "val/s2", seq_len=T,
                                                       batch_size=4)])
  np.testing.assert_array_equal(targets, 20000 + np.arange(1, 200))
  with pytest.raises(ValueError, match="val/s0"):
    list(data.eval_batches(spec, "val/nope", seq_len=T, batch_size=4))


def test_combine_is_the_weighted_average():
  s = {"a": {"val_loss": 2.0, "val_acc": 0.5, "val_bpb": 3.0, "val_tokens": 10, "val_bytes": 30},
       "b": {"val_loss": 4.0, "val_acc": 0.1, "val_bpb": 5.0, "val_tokens": 20, "val_bytes": 40},
       "z": {"val_loss": float("nan"), "val_acc": 0.0, "val_tokens": 5}}
  out = mixture.combine(s, {"a": 3.0, "b": 1.0, "z": 0.0})
  assert out["val_loss"] == pytest.approx((3 * 2.0 + 4.0) / 4)
  assert out["val_acc"] == pytest.approx((3 * 0.5 + 0.1) / 4)
  assert out["val_bpb"] == pytest.approx((3 * 3.0 + 5.0) / 4)  # z has no bytes, weight 0
  assert out["val_tokens"] == 35 and "val_bytes" not in out
  assert out["val_loss/b"] == 4.0 and out["val_bpb/a"] == 3.0 and "val_bpb/z" not in out


# ------------------------------------------------------------------------------------------
# Config errors: one line naming the key.

def one_line(fn, *parts) -> str:
  with pytest.raises(ConfigError) as e:
    fn()
  msg = str(e.value)
  assert "\n" not in msg and all(p in msg for p in parts), msg
  return msg


def test_source_key_errors(coded):
  good = coded((1.0, 1.0, 1.0))
  check = lambda sources: mixture.check_data(data_config(sources))  # noqa: E731
  one_line(lambda: check([good[0], dict(good[1], weight=-0.5)]),
           "data.mixture[1].weight=-0.5", ">= 0")
  one_line(lambda: check([dict(g, weight=0) for g in good]), "data.mixture[*].weight", "all 0")
  one_line(lambda: check([good[0], dict(good[1], wieght=1)]), "data.mixture[1].wieght",
           "not a source key")
  one_line(lambda: check([{k: v for k, v in good[0].items() if k != "weight"}]),
           "data.mixture[0].weight is missing")
  one_line(lambda: check([good[0], dict(good[1], name="s0")]), "data.mixture[1].name='s0'")
  one_line(lambda: check([dict(good[0], name="a/b")]), "data.mixture[0].name='a/b'")
  one_line(lambda: check([dict(good[0], weight=float("inf"))]), "data.mixture[0].weight=inf")
  one_line(lambda: check([dict(good[0], byte_shards="yes")]), "data.mixture[0].byte_shards")
  one_line(lambda: check([]), "data.mixture=()")
  one_line(lambda: mixture.check_data(data_config(good, train_pattern="x")),
           "data.train_pattern='x'", "data.name='mixture'")
  with pytest.raises(shards.ShardError, match=r"data.mixture\[0\].val_pattern='/nope/\*.bin'"):
    data.prepare(data_config([dict(good[0], val_pattern="/nope/*.bin")]))
  one_line(lambda: data.prepare(data_config(good, seq_len=200)),
           "data.seq_len=200", "val split of data.mixture[0]")


def test_config_level_errors(coded):
  c = config_lib.base_config()
  c.data.mixture = tuple(coded((1.0, 1.0, 1.0)))
  one_line(lambda: config_lib.validate(c), "data.mixture", "data.name='shakespeare'")
  c.data.name = "mixture"
  one_line(lambda: config_lib.validate(c), "model.vocab_size=None", "data.mixture[0]")
  c.model.vocab_size = 4096
  config_lib.validate(c)


def test_sources_must_share_one_tokenizer(tmp_path):
  toks = np.arange(600) % 200
  a, b, c = (write_source(tmp_path, n, toks, toks) for n in "abc")
  text = "the quick brown fox jumps over the lazy dog " * 40
  paths = {}
  for name, vocab, corpus in (("t270", 270, text), ("t280", 280, text),
                              ("u270", 270, text.upper())):
    paths[name] = str(tmp_path / f"{name}.json")
    train_bpe(corpus, vocab).save(paths[name])
  prepare = lambda *sources: data.prepare(data_config(  # noqa: E731
      [dict(s, weight=1.0) for s in sources]))
  one_line(lambda: prepare(dict(a, byte_shards=True), b), "data.mixture[1].tokenizer='byte'",
           "data.mixture[0].byte_shards=True", "raw shards")
  one_line(lambda: prepare(dict(a, tokenizer=paths["t270"]), dict(b, tokenizer=paths["t280"])),
           "data.mixture[1].tokenizer=", "vocabulary 280 vs vocabulary 270")
  one_line(lambda: prepare(dict(a, tokenizer=paths["t270"]), dict(b, tokenizer=paths["u270"])),
           "data.mixture[1].tokenizer=", "different tokens")
  copy = tmp_path / "copy.json"
  copy.write_text((tmp_path / "t270.json").read_text())
  spec = prepare(dict(a, tokenizer=paths["t270"]), dict(b, tokenizer=str(copy)), c | {
      "tokenizer": paths["t270"]})
  assert spec.vocab_size == 270 and spec.tokenizer is not None


# ------------------------------------------------------------------------------------------
# A real training run logs each source's evaluation.

def test_a_training_run_logs_each_source(tmp_path):
  from jaxgpt.train import run as run_lib
  rng = np.random.default_rng(0)

  def docs(n, low, high):  # byte documents of 5..40 tokens from [low, high), BOS = 0 first
    out = []
    while len(out) < n:
      out += [0, *rng.integers(low, high, int(rng.integers(5, 40)))]
    return np.asarray(out[:n])

  web = write_source(tmp_path, "web", docs(3000, 97, 123), docs(400, 97, 123))
  code = write_source(tmp_path, "code", docs(3000, 32, 64), docs(300, 32, 64))
  c = config_lib.load_file("configs/gpt.py", "test")
  c.data.update(name="mixture", byte_shards=True, bos_id=0, align_to_bos=True,
                mixture=(dict(web, weight=0.75), dict(code, weight=0.25)))
  c.train.update(steps=4, eval_every=2, eval_tokens=256, log_every=2)
  summary = run_lib.train_and_evaluate(c, str(tmp_path / "run"))
  rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text()
          .splitlines()]
  evals = [r for r in rows if "val_loss/web" in r]
  assert [r["step"] for r in evals] == [2, 4]
  for r in evals:
    assert r["val_loss"] == pytest.approx(0.75 * r["val_loss/web"] + 0.25 * r["val_loss/code"])
    assert r["val_bpb"] == pytest.approx(0.75 * r["val_bpb/web"] + 0.25 * r["val_bpb/code"])
    for name in ("web", "code"):  # byte shards: one byte per token
      assert r[f"val_bpb/{name}"] == pytest.approx(r[f"val_loss/{name}"] / math.log(2))
    assert r["val_tokens"] == 2 * 256
  assert r["val_loss/web"] != r["val_loss/code"]
  assert np.isfinite(summary["final_val_loss"]) and summary["val_bpb"] is not None
  assert np.isfinite(summary["val_loss/web"]) and np.isfinite(summary["val_loss/code"])
