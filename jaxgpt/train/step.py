"""The jitted pieces: loss, train step (with gradient accumulation) and evaluation sums."""

from __future__ import annotations

from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
import optax

from jaxgpt.models import aux
from jaxgpt.optim.logged import state_metrics
from jaxgpt.optim.qat import QAT
from jaxgpt.train.state import TrainState


def token_losses(logits_btv: jnp.ndarray, targets_bt: jnp.ndarray) -> jnp.ndarray:
  """Per-token cross entropy in nats, computed in float32."""
  return optax.softmax_cross_entropy_with_integer_labels(
      logits_btv.astype(jnp.float32), targets_bt)


def _rngs_kw(rngs: dict) -> dict:
  return {"rngs": rngs} if rngs else {}  # families without streams get the plain apply


def _loss_fn(apply_fn: Callable, collections: Sequence[str]) -> Callable:
  """params, inputs_bt, targets_bt, rngs -> (loss to differentiate, (cross entropy, metrics)).

  With no `collections` the loss is the cross entropy; otherwise the model's sown loss terms
  (`jaxgpt.models.aux`) are added to it and logged with its sown metrics. `rngs` ({} or the
  family's streams) goes to the model's apply.
  """
  if not collections:
    def plain(params, inputs_bt, targets_bt, rngs):
      logits_btv = apply_fn({"params": params}, inputs_bt, **_rngs_kw(rngs))
      ce = token_losses(logits_btv, targets_bt).mean()
      return ce, (ce, {})
    return plain

  def with_terms(params, inputs_bt, targets_bt, rngs):
    logits_btv, mutated = apply_fn({"params": params}, inputs_bt, mutable=tuple(collections),
                                   **_rngs_kw(rngs))
    ce = token_losses(logits_btv, targets_bt).mean()
    terms = aux.loss_terms(mutated)
    extra = {f"loss/{k}": v for k, v in terms.items()}
    extra.update({f"metric/{k}": v for k, v in aux.metrics(mutated).items()})
    return ce + sum(terms.values(), jnp.zeros((), jnp.float32)), (ce, extra)

  return with_terms


def step_rngs(streams: Sequence[str], seed: Any, step: jnp.ndarray, micro: Any = 0) -> dict:
  """{stream: key} for one micro-batch: a pure function of (seed, step, micro-batch, stream),
  so a resumed run draws what the uninterrupted one drew. Apart from the init key (the seed's
  key itself, never folded)."""
  base = jax.random.fold_in(jax.random.fold_in(jax.random.PRNGKey(seed), step), micro)
  return {name: jax.random.fold_in(base, 1 + i) for i, name in enumerate(streams)}


def _with_qat(loss_fn: Callable, qat: QAT) -> Callable:
  """`loss_fn` on the fake-quantized parameters (straight-through: the gradient is the one at
  the fake-quantized weights, passed to the float ones)."""
  return lambda params, *args: loss_fn(qat.quantized(params), *args)


def make_train_step(apply_fn: Callable, tx: optax.GradientTransformationExtraArgs,
                    grad_accum: int, collections: Sequence[str] = (),
                    rng_streams: Sequence[str] = (), seed: Any = 0,
                    qat: QAT | None = None) -> Callable:
  """train_step(state, batch, progress) -> (state, metrics).

  `batch` holds the whole optimizer step's sequences [B, T]; with `grad_accum` A > 1 they are
  split into A micro-batches of B/A rows (row r goes to micro-batch r mod A, which keeps each
  device's rows local under a batch-sharded layout), gradients are summed in float32 over a
  `lax.scan`, then averaged, and the optimizer runs once. `collections`: the Flax collections
  the model sows loss terms and metrics into (its family's `collections`; () = none).
  `rng_streams`: the family's rng names, keyed by `step_rngs(seed, step, micro-batch)`; `seed`
  is `train.seed` (a traced per-trial scalar in a cohort).
  `qat`: int6 quantization-aware training (`jaxgpt.optim.qat.from_config`; None: off). The
  always-on form trains on the fake-quantized weights; the late form is a `lax.cond` on the
  schedule's multiplier at (progress, step) between that step and the plain one, whole steps
  apart, so that off it computes exactly what the plain step computes (bitwise; a switch
  inside the loss alone changes how XLA fuses the optimizer update; the price: both steps are
  compiled). Logged:
  `metric/qat_on`, `metric/qat_floor_share`.
  Metrics: `train_loss` (cross entropy), `grad_norm`, and any `loss/...`, `metric/...`.
  """
  loss_fn = _loss_fn(apply_fn, collections)
  plain_step = _step_on(jax.value_and_grad(loss_fn, has_aux=True), tx, grad_accum,
                        rng_streams, seed)
  if qat is None:
    return plain_step
  qat_step = _step_on(jax.value_and_grad(_with_qat(loss_fn, qat), has_aux=True), tx,
                      grad_accum, rng_streams, seed)

  def train_step(state: TrainState, batch: dict, progress: jnp.ndarray):
    on = qat.active(progress, state.step)
    if qat.form == "int6_quantile":
      new, metrics = qat_step(state, batch, progress)
    else:
      new, metrics = jax.lax.cond(on, qat_step, plain_step, state, batch, progress)
    return new, {**metrics, **qat.metrics(state.params, on)}

  return train_step


def _step_on(grad_fn: Callable, tx: optax.GradientTransformationExtraArgs, grad_accum: int,
             rng_streams: Sequence[str], seed: Any) -> Callable:
  """The train step (make_train_step's docstring) with `grad_fn`, the value and gradient of
  a loss (params, inputs_bt, targets_bt, rngs) -> (loss, (cross entropy, extra metrics))."""
  rngs_at = ((lambda step, micro: step_rngs(rng_streams, seed, step, micro)) if rng_streams
             else (lambda step, micro: {}))

  def train_step(state: TrainState, batch: dict, progress: jnp.ndarray):
    inputs_bt, targets_bt = batch["inputs"], batch["targets"]
    if grad_accum == 1:
      (_, (loss, extra)), grads = grad_fn(state.params, inputs_bt, targets_bt,
                                          rngs_at(state.step, 0))
    else:
      b, t = inputs_bt.shape
      split = lambda x: x.reshape(b // grad_accum, grad_accum, t).swapaxes(0, 1)
      micro = (split(inputs_bt), split(targets_bt), jnp.arange(grad_accum))

      def accumulate(carry, mb):
        loss_sum, extra_sum, grad_sum = carry
        inputs, targets, i = mb
        (_, (loss, extra)), grads = grad_fn(state.params, inputs, targets,
                                            rngs_at(state.step, i))
        grad_sum = jax.tree.map(lambda s, g: s + g.astype(jnp.float32), grad_sum, grads)
        extra_sum = jax.tree.map(jnp.add, extra_sum, extra)
        return (loss_sum + loss, extra_sum, grad_sum), None

      zeros = jax.tree.map(lambda p: jnp.zeros(p.shape, jnp.float32), state.params)
      extra0 = jax.tree.map(jnp.zeros_like, jax.eval_shape(
          lambda: grad_fn(state.params, micro[0][0], micro[1][0], rngs_at(state.step, 0))
          [0][1][1]))
      (loss_sum, extra_sum, grad_sum), _ = jax.lax.scan(
          accumulate, (jnp.zeros((), jnp.float32), extra0, zeros), micro)
      loss = loss_sum / grad_accum
      extra = jax.tree.map(lambda v: v / grad_accum, extra_sum)
      grads = jax.tree.map(lambda g, p: (g / grad_accum).astype(p.dtype), grad_sum, state.params)
    updates, opt_state = tx.update(grads, state.opt_state, state.params, progress=progress)
    params = optax.apply_updates(state.params, updates)
    metrics = {"train_loss": loss, "grad_norm": optax.tree.norm(grads), **extra,
               **state_metrics(opt_state)}  # e.g. a learned optimizer's LR multipliers
    return state.replace(step=state.step + 1, params=params, opt_state=opt_state), metrics

  return train_step


def make_eval_step(apply_fn: Callable, token_bytes: jnp.ndarray | None) -> Callable:
  """eval_step(params, batch) -> sums of loss, correct predictions, tokens and bytes.

  Sums (not means) so that batches and processes add up exactly; `weights` is 0 on padding.
  Bytes come from the tokenizer's per-token byte lengths of the scored targets, which makes
  bits per byte exact for any window set.
  """

  def eval_step(params: Any, batch: dict) -> dict:
    logits_btv = apply_fn({"params": params}, batch["inputs"])
    targets_bt, w_bt = batch["targets"], batch["weights"]
    losses_bt = token_losses(logits_btv, targets_bt)
    correct_bt = (jnp.argmax(logits_btv, axis=-1) == targets_bt).astype(jnp.float32)
    sums = {
        "loss_sum": jnp.sum(losses_bt * w_bt),
        "correct_sum": jnp.sum(correct_bt * w_bt),
        "tokens": jnp.sum(w_bt),
    }
    if token_bytes is not None:
      sums["bytes"] = jnp.sum(token_bytes[targets_bt].astype(jnp.float32) * w_bt)
    return sums

  return eval_step


def summarize_eval(sums: dict) -> dict:
  """val_loss (nats/token), val_acc and val_bpb from summed eval statistics."""
  tokens = float(sums["tokens"])
  out = {"val_loss": float(sums["loss_sum"]) / tokens,
         "val_acc": float(sums["correct_sum"]) / tokens,
         "val_tokens": int(tokens)}
  if "bytes" in sums:
    out["val_bytes"] = int(sums["bytes"])
    out["val_bpb"] = float(sums["loss_sum"]) / (float(jnp.log(2.0)) * float(sums["bytes"]))
  return out
