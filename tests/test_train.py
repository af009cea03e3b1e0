"""End-to-end training on the embedded corpus (test variant), and the step's numerics."""

import json
import math
import os

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxgpt.train import loop
from jaxgpt.train import run as train_run
from jaxgpt.train import step as step_lib
from tests.helpers import load_config

SUMMARY_KEYS = {
    "num_params", "steps", "tokens_per_step", "wall_time_s", "train_time_s", "eval_time_s",
    "compile_time_s", "tokens_per_s", "final_val_loss", "best_val_loss", "val_bpb", "val_acc",
    "target_loss", "reached_target", "time_to_target_s", "step_to_target", "stop_reason", "mesh"}


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp("run"))
  summary = train_run.train_and_evaluate(load_config("gpt", "test"), workdir)
  return workdir, summary


def test_run_writes_contract_files(finished_run):
  workdir, summary = finished_run
  assert SUMMARY_KEYS <= set(summary)
  on_disk = json.load(open(os.path.join(workdir, "summary.json")))
  assert on_disk["final_val_loss"] == summary["final_val_loss"]
  assert summary["stop_reason"] == "steps" and summary["steps"] == 12
  assert summary["mesh"] == {"data": 1, "fsdp": 1, "tensor": 1, "expert": 1}
  assert math.isfinite(summary["val_bpb"]) and 0 < summary["val_acc"] <= 1
  # Byte tokenizer: bits per byte is the loss in bits.
  np.testing.assert_allclose(summary["val_bpb"], summary["final_val_loss"] / math.log(2),
                             rtol=1e-6)
  for name in ("config.json", "metrics.jsonl", "curves.png", "tensorboard", "checkpoints"):
    assert os.path.exists(os.path.join(workdir, name)), name
  records = [json.loads(line) for line in open(os.path.join(workdir, "metrics.jsonl"))]
  assert [r["step"] for r in records if "train_loss" in r] == [2, 4, 6, 8, 10, 12]
  evals = [r for r in records if "val_loss" in r]
  assert [r["step"] for r in evals] == [6, 12]
  for r in evals:
    assert {"val_bpb", "val_acc", "tokens_per_s", "lr", "elapsed_s"} <= set(r)
  assert records[-1]["final_val_loss"] == summary["final_val_loss"]


def test_loss_decreases(finished_run):
  workdir, _ = finished_run
  records = [json.loads(line) for line in open(os.path.join(workdir, "metrics.jsonl"))]
  losses = [r["train_loss"] for r in records if "train_loss" in r]
  assert losses[-1] < losses[0] - 0.3, losses  # from ~ln(256) = 5.5 nats


def test_rerun_of_finished_run_does_not_train_again(finished_run):
  workdir, summary = finished_run
  again = train_run.train_and_evaluate(load_config("gpt", "test"), workdir)
  assert again["steps"] == summary["steps"]
  assert again["final_val_loss"] == summary["final_val_loss"]


def test_changed_config_refused_naming_keys(finished_run):
  workdir, _ = finished_run
  with pytest.raises(loop.ConfigChangedError, match=r"optimizer\.lr"):
    train_run.train_and_evaluate(load_config("gpt", "test", optimizer__lr=0.5), workdir)


def test_allowed_change_extends_training(finished_run, tmp_path):
  import shutil
  workdir = str(tmp_path / "copy")
  shutil.copytree(finished_run[0], workdir)
  out = train_run.train_and_evaluate(load_config("gpt", "test", train__steps=14), workdir,
                                allow_config_change=True)
  assert out["steps"] == 14 and out["stop_reason"] == "steps"


def test_target_loss_stops_early(tmp_path):
  cfg = load_config("gpt", "test", train__target_loss=100.0)
  out = train_run.train_and_evaluate(cfg, str(tmp_path))
  assert out["reached_target"] and out["stop_reason"] == "target"
  assert out["step_to_target"] == cfg.train.eval_every == out["steps"]
  assert 0 < out["time_to_target_s"] <= out["train_time_s"]


def test_time_cap_completes_decay(tmp_path, capsys):
  """A fake clock: each reading advances 1 s. The cap binds long before the step budget, and
  the schedule still reaches its end (the parameter-golf trap is impossible). The progress bar
  shows the training clock against the cap."""
  ticks = iter(range(10**6))
  cfg = load_config("gpt", "test", train__steps=1000, train__max_time_s=30.0, train__log_every=1,
                    optimizer__schedule="linear", optimizer__final_lr_frac=0.0,
                    train__progress_bar=True)
  out = train_run.train_and_evaluate(cfg, str(tmp_path), clock=lambda: float(next(ticks)))
  assert out["stop_reason"] == "time_cap" and out["steps"] < 1000
  err = capsys.readouterr().err
  assert "train_s=" in err and "/30" in err.split("train_s=")[-1][:12], err[-500:]
  records = [json.loads(line) for line in open(tmp_path / "metrics.jsonl")]
  lrs = [r["lr"] for r in records if "lr" in r]
  assert lrs[-1] <= 0.1 * cfg.optimizer.lr, lrs


def test_final_eval_tokens_caps_the_final_evaluation(tmp_path):
  """With train.final_eval_tokens = eval_tokens the final evaluation reads the same tokens as
  the last periodic one, with the same parameters: the same loss; a bad value names the key."""
  cfg = load_config("gpt", "test")
  cfg.train.final_eval_tokens = cfg.train.eval_tokens
  assert cfg.train.steps % cfg.train.eval_every == 0
  out = train_run.train_and_evaluate(cfg, str(tmp_path))
  rows = [json.loads(line) for line in open(tmp_path / "metrics.jsonl")]
  last = [r for r in rows if "val_tokens" in r][-1]
  assert last["step"] == out["steps"]
  assert out["final_val_tokens"] == last["val_tokens"] <= cfg.train.eval_tokens
  assert out["final_val_loss"] == pytest.approx(last["val_loss"], rel=1e-6)
  bad = load_config("gpt", "test", train__final_eval_tokens=0)
  with pytest.raises(ValueError, match="train.final_eval_tokens=0"):
    train_run.train_and_evaluate(bad, str(tmp_path / "bad"))


def _tiny_apply(vocab):
  """A fixed linear 'model' so the step's numerics can be checked independently."""
  def apply_fn(variables, tokens_bt):
    return variables["params"]["w"][tokens_bt]
  return apply_fn


def test_grad_accum_matches_full_batch():
  vocab, b, t = 11, 8, 5
  rng = np.random.default_rng(0)
  params = {"w": jnp.asarray(rng.normal(size=(vocab, vocab)), jnp.float32)}
  batch = {"inputs": jnp.asarray(rng.integers(0, vocab, (b, t)), jnp.int32),
           "targets": jnp.asarray(rng.integers(0, vocab, (b, t)), jnp.int32)}
  tx = optax.with_extra_args_support(optax.sgd(0.1))
  from jaxgpt.train.state import TrainState
  outs = []
  for accum in (1, 2, 4):
    state = TrainState(step=jnp.zeros((), jnp.int32), params=params, opt_state=tx.init(params))
    fn = jax.jit(step_lib.make_train_step(_tiny_apply(vocab), tx, accum))
    new, m = fn(state, batch, jnp.float32(0.0))
    outs.append((new.params, m["train_loss"]))
  for p, loss in outs[1:]:
    chex.assert_trees_all_close(p, outs[0][0], atol=1e-6)
    chex.assert_trees_all_close(loss, outs[0][1], atol=1e-6)


def test_val_bpb_hand_computed():
  """Uniform logits over 4 tokens: loss ln 4 per token = 2 bits; 2 bytes per token -> 1 bpb."""
  def apply_fn(variables, tokens_bt):
    return jnp.zeros(tokens_bt.shape + (4,), jnp.float32)
  token_bytes = jnp.asarray([2, 2, 2, 2], jnp.int32)
  batch = {"inputs": jnp.zeros((2, 3), jnp.int32),
           "targets": jnp.asarray([[0, 1, 2], [3, 0, 0]], jnp.int32),
           "weights": jnp.asarray([[1, 1, 1], [1, 0, 0]], jnp.float32)}
  sums = step_lib.make_eval_step(apply_fn, token_bytes)(None, batch)
  out = step_lib.summarize_eval(sums)
  np.testing.assert_allclose(out["val_loss"], math.log(4), rtol=1e-6)
  np.testing.assert_allclose(out["val_bpb"], 1.0, rtol=1e-6)
  assert out["val_tokens"] == 4 and out["val_bytes"] == 8
  # Mixed byte lengths: bytes come from the scored targets only.
  token_bytes = jnp.asarray([1, 2, 3, 4], jnp.int32)
  out = step_lib.summarize_eval(step_lib.make_eval_step(apply_fn, token_bytes)(None, batch))
  assert out["val_bytes"] == 1 + 2 + 3 + 4
  np.testing.assert_allclose(out["val_bpb"], 4 * 2 / 10, rtol=1e-6)


def test_sample_mode(finished_run):
  from jaxgpt.train.inference import sample_workdir
  cfg = load_config("gpt", "test")
  cfg.unlock()
  # Cached generation (the default) holds prompt + new tokens in data.seq_len = 32 slots.
  cfg.sample.update(prompt="ROMEO:", max_new_tokens=26, num_samples=2)
  texts = sample_workdir(cfg, finished_run[0])
  assert len(texts) == 2 and all(t.startswith("ROMEO:") and len(t) > 6 for t in texts)


def test_eval_mode(finished_run):
  from jaxgpt.train.inference import evaluate_workdir
  workdir, summary = finished_run
  out = evaluate_workdir(load_config("gpt", "test"), workdir)
  assert out["step"] == summary["steps"]
  np.testing.assert_allclose(out["val_loss"], summary["final_val_loss"], rtol=1e-6)
  assert out["val_tokens"] == summary["final_val_tokens"]


def test_train_on_token_shards(tmp_path):
  """data.name='shards' reads shards the test writes (the FineWeb format); no tokenizer, so
  there is no val_bpb, and ids beyond model.vocab_size are refused naming the file."""
  from jaxgpt import data
  rng = np.random.default_rng(0)
  for split, n in (("train", 3), ("val", 1)):
    for i in range(n):
      data.write_shard(tmp_path / f"tok_{split}_{i:06d}.bin",
                       rng.integers(0, 60, 5000).astype(np.uint16))
  kw = dict(data__name="shards", data__train_pattern=str(tmp_path / "tok_train_*.bin"),
            data__val_pattern=str(tmp_path / "tok_val_*.bin"), model__vocab_size=64,
            train__steps=4, train__eval_every=2)
  out = train_run.train_and_evaluate(load_config("gpt", "test", **kw), str(tmp_path / "run"))
  assert out["steps"] == 4 and out["val_bpb"] is None and math.isfinite(out["final_val_loss"])
  bad = tmp_path / "tok_val_000000.bin"
  data.write_shard(bad, np.full(5000, 70, np.uint16))
  with pytest.raises(Exception, match="tok_val_000000.bin"):
    train_run.train_and_evaluate(load_config("gpt", "test", **kw), str(tmp_path / "run2"))
