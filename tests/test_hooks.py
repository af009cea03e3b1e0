"""The training core's hooks, exercised by toy entries registered here: a model family that sows
a loss term and a metric (`jaxgpt.models.aux`), and an optimizer whose host-side callback sets
its learning rate from the validation loss (`registry.Optimizer.host_update`), both through the
single-run loop and a vmapped cohort."""

import json
import os

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxgpt import registry
from jaxgpt.keypath import key_str
from jaxgpt.models import aux
from jaxgpt.sweep import cohort
from jaxgpt.train import run as train_run
from jaxgpt.train import step as step_lib
from jaxgpt.train.inference import load_params
from jaxgpt.train.state import TrainState
from tests.helpers import load_config

COEF = 0.3


class Bigram(nn.Module):
  """logits = table[token]; sows 0.5 COEF |table|^2 as a loss and |table| as a metric."""
  vocab: int

  @nn.compact
  def __call__(self, tokens_bt):
    table = self.param("table", nn.with_logical_partitioning(
        nn.initializers.normal(0.1), ("vocab", "embed")), (self.vocab, self.vocab))
    aux.add_loss(self, "l2", 0.5 * COEF * jnp.sum(table ** 2))
    aux.add_metric(self, "table_norm", jnp.sqrt(jnp.sum(table ** 2)))
    return table[tokens_bt].astype(jnp.float32)


def _meta_update(opt_cfg, state, step, evals):
  """Sets every learning_rate hyperparameter to 0 once a validation loss is known."""
  del opt_cfg
  CALLS.append((step, [e["val_loss"] for e in evals]))
  zero = lambda p, x: jnp.zeros_like(x) if key_str(p[-1]) == "learning_rate" else x
  return state.replace(opt_state=jax.tree_util.tree_map_with_path(zero, state.opt_state))


CALLS: list = []


@pytest.fixture(scope="module", autouse=True)
def toy_entries():
  registry.MODELS.register("toy_bigram", registry.ModelFamily(
      build=lambda m, vocab: Bigram(vocab), flops_per_token=lambda m, v, t: 0.0,
      collections=(aux.LOSSES, aux.METRICS)))
  registry.OPTIMIZERS.register("toy_meta_sgd", registry.Optimizer(
      build=lambda o: optax.inject_hyperparams(optax.sgd)(learning_rate=o.lr),
      host_update=_meta_update))
  yield
  registry.MODELS.unregister("toy_bigram")
  registry.OPTIMIZERS.unregister("toy_meta_sgd")


def test_sown_loss_term_is_added_and_logged():
  """One SGD step (lr 1) against the float64 closed form: grad = (softmax - onehot) / N
  scattered to the table rows, plus COEF * table from the sown term."""
  vocab, b, t = 7, 2, 3
  model = Bigram(vocab)
  rng = np.random.default_rng(0)
  tokens = jnp.asarray(rng.integers(0, vocab, (b, t)), jnp.int32)
  targets = jnp.asarray(rng.integers(0, vocab, (b, t)), jnp.int32)
  params = nn.unbox(model.init(jax.random.PRNGKey(0), tokens)["params"])
  tx = optax.with_extra_args_support(optax.sgd(1.0))
  state = TrainState(step=jnp.zeros((), jnp.int32), params=params, opt_state=tx.init(params))
  fn = jax.jit(step_lib.make_train_step(model.apply, tx, 1, (aux.LOSSES, aux.METRICS)))
  new, m = fn(state, {"inputs": tokens, "targets": targets}, jnp.float32(0.0))

  w = np.asarray(params["table"], np.float64)
  logits = w[np.asarray(tokens)]
  p = np.exp(logits - logits.max(-1, keepdims=True))
  p /= p.sum(-1, keepdims=True)
  onehot = np.eye(vocab)[np.asarray(targets)]
  ce = -np.mean(np.sum(onehot * np.log(p), -1))
  grad = np.zeros_like(w)
  np.add.at(grad, np.asarray(tokens).ravel(), ((p - onehot) / (b * t)).reshape(-1, vocab))
  grad += COEF * w
  chex.assert_trees_all_close(np.asarray(new.params["table"]), w - grad, atol=1e-6)
  np.testing.assert_allclose(m["train_loss"], ce, rtol=1e-6)  # train_loss: the cross entropy
  np.testing.assert_allclose(m["loss/l2"], 0.5 * COEF * np.sum(w ** 2), rtol=1e-6)
  np.testing.assert_allclose(m["metric/table_norm"], np.sqrt(np.sum(w ** 2)), rtol=1e-6)
  np.testing.assert_allclose(m["grad_norm"], np.sqrt(np.sum(grad ** 2)), rtol=1e-5)


def _toy_config(steps=12, lr=0.5, seed=0):
  c = load_config("gpt", "test")
  c.model.name = "toy_bigram"
  c.optimizer.update(name="toy_meta_sgd", lr=lr, grad_clip=0.0, schedule="constant",
                     warmup_frac=0.0)
  c.train.update(steps=steps, seed=seed, data_seed=0)
  return c


def _rows(workdir):
  return [json.loads(line) for line in open(os.path.join(workdir, "metrics.jsonl"))]


def test_hooks_through_the_single_run_loop(tmp_path):
  CALLS.clear()
  out = train_run.train_and_evaluate(_toy_config(), str(tmp_path / "a"))
  assert out["stop_reason"] == "steps" and [s for s, _ in CALLS] == [6, 12]
  rows = _rows(tmp_path / "a")
  assert all("step" in r and "elapsed_s" in r for r in rows)  # the final row too
  logged = [r for r in rows if "train_loss" in r]
  assert all("loss/l2" in r and "metric/table_norm" in r for r in logged)
  # The callback zeroed the learning rate at the step-6 evaluation: steps 7..12 change nothing.
  train_run.train_and_evaluate(_toy_config(steps=6), str(tmp_path / "b"))
  _, after_12, _ = load_params(_toy_config(), str(tmp_path / "a"))
  _, after_6, _ = load_params(_toy_config(steps=6), str(tmp_path / "b"))
  chex.assert_trees_all_equal(after_12, after_6)
  norms = [r["metric/table_norm"] for r in logged]
  assert norms[-1] == norms[3] != norms[0]  # logged at steps 2..12: frozen from step 8


def test_hooks_through_a_cohort(tmp_path):
  """K=2 through the same loop: the callback sees both trials' evaluations and freezes both."""
  CALLS.clear()
  out = cohort.train_cohort([_toy_config(lr=0.5, seed=0), _toy_config(lr=0.2, seed=1)],
                            str(tmp_path), solo_steps=0, final_eval_tokens=512)
  assert [s for s, _ in CALLS] == [6, 12] and all(len(v) == 2 for _, v in CALLS)
  for i in range(2):
    logged = [r for r in _rows(tmp_path / f"trial_{i}") if "train_loss" in r]
    norms = [r["metric/table_norm"] for r in logged]
    assert "loss/l2" in logged[0] and norms[-1] == norms[3] != norms[0]
    assert out[i]["stop_reason"] == "steps"
