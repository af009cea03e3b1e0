"""Document-masked attention (`model.document_mask`, `model.document_positions`, `data.bos_id`):
segment ids and positions against a Python loop; for GPT (plain, and scanned with remat and U-net
skips), nGPT, gated nGPT and MoE (dense dispatch), a window packing three documents gives, at
each document's positions, the logits of that document run alone through the unmasked model;
nothing flows across a boundary (perturbed tokens, and the gradient through the input
embeddings); the config errors.

Everything is float32. Tolerance of the packed-vs-alone comparisons: atol = rtol = 1e-5. The two
runs compute the same function, but the packed one reduces over all 16 key slots (the masked
ones add exact zeros) in other positions than the alone one, so sums round differently in the
last bits. Perturbation and gradient checks across a boundary are exact (masked probabilities
are exactly 0).
"""

import functools

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxgpt import config as config_lib
from jaxgpt import models
from jaxgpt.config import base_config
from jaxgpt.errors import ConfigError
from jaxgpt.models import dims, docmask

V, T, D = 67, 16, 32  # a prime vocabulary; a 16-token window; tiny models (2 layers x 32)
BOS = 3  # the boundary token of these tests
LENGTHS = (5, 7, 4)  # three documents packed into one window, each starting with BOS
ATOL = RTOL = 1e-5  # float32, see the module docstring

FAMILIES = {
    "gpt": dict(name="gpt", qk_norm=True, tie_embeddings=True),
    "gpt_scan": dict(name="gpt", scan_layers=True, remat=True, encoder_layers=1),
    "ngpt": dict(name="ngpt", mlp_act="swiglu", qk_norm=False, tie_embeddings=False,
                 mlp_mult=2.0),
    "gated_ngpt": dict(name="gated_ngpt", mlp_act="swiglu", qk_norm=False,
                       tie_embeddings=False, mlp_mult=2.0),
    "moe": dict(name="moe"),
}


def model_cfg(family, **overrides):
  m = base_config().model
  m.update(num_layers=2, d_model=D, num_heads=4, num_kv_heads=2, compute_dtype="float32",
           scan_layers=False, remat=False)
  m.update(**FAMILIES[family])
  if m.name == "moe":  # dense dispatch: capacity dispatch leaks across documents by dropping
    m.moe.update(num_experts=4, top_k=2, dispatch="dense")
  m.update(**overrides)
  return m


@functools.cache
def build(family, mask=False, restart=False):
  cfg = model_cfg(family, document_mask=mask, document_positions=restart)
  return models.build_model(cfg, V, BOS if mask else None)


@functools.cache
def logits_fn(family, mask=False, restart=False):
  model = build(family, mask, restart)
  return jax.jit(lambda params, tokens_bt: model.apply({"params": params}, tokens_bt))


@functools.cache
def params_of(family):
  """Random parameters from the abstract tree: norm scales 1 +- 0.1, everything else
  N(0, 1 / fan_in) (fan_in = the second-to-last axis; vectors and scalars N(0, 1)), so every
  branch (nGPT's alphas and gates included) does something."""
  rng = np.random.default_rng(0)
  shapes = jax.eval_shape(build(family).init, jax.random.PRNGKey(0),
                          jnp.zeros((1, T), jnp.int32))["params"]

  def fill(path, leaf):
    if path[-1].key == "scale":
      return jnp.asarray(1.0 + 0.1 * rng.standard_normal(leaf.shape), jnp.float32)
    std = 1.0 / np.sqrt(leaf.shape[-2]) if len(leaf.shape) >= 2 else 1.0
    return jnp.asarray(std * rng.standard_normal(leaf.shape), jnp.float32)
  return jax.tree_util.tree_map_with_path(fill, nn.unbox(shapes))


def documents(seed=0):
  """Three documents: BOS then non-BOS tokens; doc 1's tokens avoid the others' ids."""
  rng = np.random.default_rng(seed)
  doc1 = np.concatenate([[BOS], rng.integers(BOS + 1, 30, LENGTHS[0] - 1)])
  rest = [np.concatenate([[BOS], rng.integers(30, V, n - 1)]) for n in LENGTHS[1:]]
  return [doc1.astype(np.int32)] + [d.astype(np.int32) for d in rest]


def windows(docs, seed=1):
  """[4, T]: row 0 packs the three documents; row 1 + i holds document i alone, followed by
  non-BOS filler (which a causal model's logits at the document's positions never read)."""
  rng = np.random.default_rng(seed)
  rows = [np.concatenate(docs)]
  for d in docs:
    rows.append(np.concatenate([d, rng.integers(BOS + 1, V, T - len(d))]))
  return np.stack(rows).astype(np.int32)


def slots(i):
  start = sum(LENGTHS[:i])
  return slice(start, start + LENGTHS[i])


# ------------------------------------------------------------------------------------------
# Segment ids, positions and the mask against a Python loop.

def loop_reference(tokens_t, bos):
  seg, pos, s, p = [], [], 0, -1
  for tok in tokens_t:
    if tok == bos:
      s, p = s + 1, -1
    p += 1
    seg.append(s)
    pos.append(p)
  return np.array(seg), np.array(pos)


def test_segments_positions_and_mask_match_a_loop():
  rng = np.random.default_rng(0)
  tokens_bt = rng.integers(0, 4, (6, 24)).astype(np.int32)  # boundary id 0: many documents
  tokens_bt[0, 0] = 0  # a window starting at a boundary
  tokens_bt[1, :] = 2  # a window without any boundary: one segment, positions 0 .. T-1
  docs = jax.jit(lambda x: docmask.documents(x, 0, True))(tokens_bt)
  mask = np.asarray(docmask.attention_mask(docs.segment_ids_bt))
  for b in range(tokens_bt.shape[0]):
    seg, pos = loop_reference(tokens_bt[b], 0)
    np.testing.assert_array_equal(docs.segment_ids_bt[b], seg)
    np.testing.assert_array_equal(docs.positions_bt[b], pos)
    np.testing.assert_array_equal(mask[b, 0], seg[:, None] == seg[None, :])
  assert docmask.documents(tokens_bt, 0, False).positions_bt is None


def test_rope_tables_gather_the_window_tables():
  from jaxgpt.models import layers
  pos_bt = jnp.asarray([[0, 1, 2, 0, 1, 0], [3, 4, 5, 0, 0, 1]], jnp.int32)
  sin, cos = layers.rope_tables(6, 8, 10000.0, pos_bt)
  sin_tk, cos_tk = layers.rope_angles(6, 8, 10000.0)
  np.testing.assert_array_equal(sin, sin_tk[np.asarray(pos_bt)])
  np.testing.assert_array_equal(cos, cos_tk[np.asarray(pos_bt)])


# ------------------------------------------------------------------------------------------
# The packed window against each document alone.

@pytest.mark.parametrize("family", list(FAMILIES))
def test_packed_documents_match_each_document_alone(family):
  params, docs = params_of(family), documents()
  tokens_bt = windows(docs)
  plain = logits_fn(family)(params, tokens_bt)
  masked = logits_fn(family, True, True)(params, tokens_bt)
  for i in range(3):  # document_positions=True: every document as if it started the window
    chex.assert_trees_all_close(masked[0, slots(i)], plain[1 + i, :LENGTHS[i]],
                                atol=ATOL, rtol=RTOL)
  # The alone rows hold one document from index 0: masking changes nothing there.
  chex.assert_trees_all_close(masked[1:, :LENGTHS[0]], plain[1:, :LENGTHS[0]],
                              atol=ATOL, rtol=RTOL)
  # Not vacuous: unmasked, the second document reads the first.
  assert np.max(np.abs(plain[0, slots(1)] - masked[0, slots(1)])) > 1e-3

  # document_positions=False: the first document starts at window index 0, so it still matches.
  # (RoPE is relative, so the later ones match too up to the angle tables' rounding at shifted
  # positions, which nGPT's large q.k scales can push past 1e-5; only the first is claimed.)
  kept = logits_fn(family, True, False)(params, tokens_bt)
  chex.assert_trees_all_close(kept[0, slots(0)], plain[1, :LENGTHS[0]], atol=ATOL, rtol=RTOL)


@pytest.mark.parametrize("family", ["gpt", "ngpt", "moe"])
@pytest.mark.parametrize("restart", [False, True])
def test_rope_reads_the_document_positions(family, restart, monkeypatch):
  """RoPE is relative, so restarted positions change the logits only by rounding (GPT's pass
  the comparison above either way): check the wiring itself. Every layer's RoPE gets the
  per-document positions with document_positions=True, none (window order) without."""
  from jaxgpt.models import layers
  seen, rope_tables = [], layers.rope_tables

  def spy(seq_len, head_dim, base, positions_bt=None):
    seen.append(positions_bt)
    return rope_tables(seq_len, head_dim, base, positions_bt)
  monkeypatch.setattr(layers, "rope_tables", spy)
  tokens_bt = windows(documents())[:1]
  build(family, True, restart).apply({"params": params_of(family)}, tokens_bt)  # eager
  assert len(seen) == 2  # one per layer
  expected = loop_reference(tokens_bt[0], BOS)[1]
  for positions_bt in seen:
    if restart:
      np.testing.assert_array_equal(positions_bt[0], expected)
    else:
      assert positions_bt is None


@pytest.mark.parametrize("family", list(FAMILIES))
def test_no_information_crosses_a_boundary(family):
  """Other tokens in document 1 leave documents 2 and 3's logits bit-identical; and the
  gradient of document 2's loss with respect to document 1's input embeddings is exactly 0."""
  params, docs = params_of(family), documents()
  fn = logits_fn(family, True, True)
  tokens_bt = windows(docs)
  other = tokens_bt.copy()
  other[0, 1:LENGTHS[0]] = (other[0, 1:LENGTHS[0]] + 7) % 26 + BOS + 1  # still non-BOS
  assert (other[0, 1:LENGTHS[0]] != tokens_bt[0, 1:LENGTHS[0]]).all()
  a, b = fn(params, tokens_bt), fn(params, other)
  np.testing.assert_array_equal(a[0, LENGTHS[0]:], b[0, LENGTHS[0]:])
  assert np.max(np.abs(a[0, 1:LENGTHS[0]] - b[0, 1:LENGTHS[0]])) > 0  # doc 1 itself changed

  grad = embedding_grad(family)(params, tokens_bt[:1])[0]  # [T, D]
  assert np.all(np.asarray(grad[slots(0)]) == 0.0)  # document 1 (its BOS included)
  assert np.max(np.abs(grad[slots(1)])) > 0  # the gradient does reach document 2's inputs
  assert np.all(np.asarray(grad[slots(2)]) == 0.0)  # causal: document 3 comes later


@functools.cache
def embedding_grad(family):
  """tokens [1, T] -> d loss / d (input embeddings) [1, T, D], with the loss the cross entropy
  of document 2's positions (targets: the next token). A zero `delta` is added to the output
  of the token embedding (intercepted), so the gradient is taken at the embeddings."""
  model = build(family, True, True)

  def loss(delta_btd, params, tokens_bt):
    def add_delta(next_fun, args, kwargs, context):
      out = next_fun(*args, **kwargs)
      if isinstance(context.module, nn.Embed) and context.method_name == "__call__":
        return out + delta_btd.astype(out.dtype)
      return out
    with nn.intercept_methods(add_delta):
      logits_btv = model.apply({"params": params}, tokens_bt)
    logp_tv = jax.nn.log_softmax(logits_btv[0, slots(1)])
    targets_t = jnp.roll(tokens_bt[0], -1)[slots(1)]
    return -jnp.sum(jnp.take_along_axis(logp_tv, targets_t[:, None], axis=-1))

  def grad(params, tokens_bt):
    delta = jnp.zeros(tokens_bt.shape + (D,), jnp.float32)
    return jax.grad(loss)(delta, params, tokens_bt)
  return jax.jit(grad)


def test_moe_dense_dispatch_keeps_documents_apart_through_the_router():
  """The routed FFN is per token under dense dispatch (the equality tests above use it)."""
  assert build("moe", True, True).cfg.moe.dispatch == "dense"


# ------------------------------------------------------------------------------------------
# Config errors: one line, naming the keys.

def validated(**over):
  c = base_config()
  c.model.update(num_layers=2, d_model=D, num_heads=4)
  for key, value in over.items():
    section, name = key.split("__")
    c[section][name] = value
  config_lib.validate(c)
  return c


def one_line_error(fn, *patterns):
  with pytest.raises(ConfigError) as e:
    fn()
  msg = str(e.value)
  assert "\n" not in msg
  for p in patterns:
    assert p in msg, (p, msg)
  return msg


def test_mask_without_bos_id_names_both_keys():
  one_line_error(lambda: validated(model__document_mask=True), "model.document_mask=True",
                 "data.bos_id")
  # Built without the boundary id (the model section alone): an error, never an unmasked run.
  one_line_error(lambda: models.build_model(model_cfg("gpt", document_mask=True), V),
                 "model.document_mask=True", "data.bos_id")
  validated(model__document_mask=True, data__bos_id=50256)  # fine
  validated(data__bos_id=1)  # a boundary id alone is fine


def test_positions_need_the_mask():
  one_line_error(lambda: validated(model__document_positions=True, data__bos_id=1),
                 "model.document_positions=True", "model.document_mask")
  validated(model__document_positions=True, model__document_mask=True, data__bos_id=1)


def test_bad_values_name_the_key():
  one_line_error(lambda: validated(data__bos_id=-1), "data.bos_id=-1")
  # ConfigDict refuses a non-bool in a bool field itself; a plain mapping reaches the check.
  one_line_error(lambda: dims.document_flags({"document_mask": 1}), "model.document_mask=1")
  one_line_error(lambda: dims.document_flags({"document_positions": "yes"}),
                 "model.document_positions='yes'")
  one_line_error(lambda: dims.check_bos_id(True, 1.0), "data.bos_id=1.0")


def test_bos_id_outside_the_vocabulary():
  one_line_error(lambda: models.build_model(model_cfg("gpt", document_mask=True), V, V),
                 f"data.bos_id={V}", str(V))


@pytest.mark.parametrize("family", ["ngpt", "moe"])
def test_other_families_check_the_keys(family):
  m = model_cfg(family, document_mask=True)
  one_line_error(lambda: models.build_model(m, V), "model.document_mask=True", "data.bos_id")


def test_titans_refuses_the_mask():
  c = base_config()
  c.model.update(name="titans", num_layers=2, d_model=D, num_heads=4, document_mask=True)
  c.data.bos_id = 1
  msg = one_line_error(lambda: config_lib.validate(c), "model.document_mask=True", "titans")
  assert "memory" in msg


@pytest.mark.parametrize("bos_id, separator", [(10, "newline"), (None, "bos")])
def test_a_masked_run_trains_end_to_end(tmp_path, bos_id, separator):
  """The trainer hands the boundary token to the model: `data.bos_id` when set (the byte corpus
  with newline, id 10, standing in for one), else the data's own (`document_separator="bos"`:
  the byte tokenizer's id 256 before every work)."""
  from jaxgpt.train import run as run_lib
  c = config_lib.load_file("configs/gated_ngpt.py", "test")
  c.train.update(steps=4, eval_every=2, eval_tokens=256)
  c.data.update(bos_id=bos_id, document_separator=separator)
  c.model.update(document_mask=True, document_positions=True)
  summary = run_lib.train_and_evaluate(c, str(tmp_path))
  assert summary["steps"] == 4 and np.isfinite(summary["final_val_loss"])
