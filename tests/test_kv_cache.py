"""Cached generation (jaxgpt/models/kvcache.py, jaxgpt/train/generate.py) against independent
references, in float32 on tiny configs:

- greedy cached decoding equals greedy recomputation of the whole window token for token (gpt
  scanned with GQA and U-net skips, gpt unscanned with MQA, a parallel block and a soft-cap, and
  moe), and so do sampled ones (both draw token i with the same key);
- the logits every token was drawn from equal the plain full forward pass over that row alone
  (no padding, no cache) at that position, within LOGIT_TOL x the largest |logit|;
- a left-padded batch row decodes as the row alone;
- the kept set of temperature + top-k + top-p against a float64 numpy reference, its
  renormalised probabilities, and draws that stay inside it with the right frequencies;
- the one-line length error, the families without a cache, and `--mode sample`'s wiring.
"""

import contextlib
import dataclasses

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxgpt import models
from jaxgpt.errors import ConfigError
from jaxgpt.models import gpt
from jaxgpt.train import generate as gen
from jaxgpt.train import inference
from tests.helpers import load_config

VOCAB = 64
SEQ_LEN = 32  # configs/*.py:test's data.seq_len
NEW = 16
PROMPTS = [[5, 9, 17, 33, 2, 41, 8, 60, 13], [7, 30, 12, 3]]  # lengths 9 and 4: row 1 padded
# Cached and full-forward logits sum the same terms in another order (a masked softmax over S
# cache slots against a causal one over T): float32 rounding, measured ~1e-6 of max |logit|.
LOGIT_TOL = 1e-5

CASES = {  # (family, model keys): gpt scanned and unscanned with its knobs, moe (no QK-norm)
    "gpt_scan_gqa_skips": ("gpt", dict(scan_layers=True, num_kv_heads=2, encoder_layers=1)),
    "gpt_unscanned_parallel": ("gpt", dict(scan_layers=False, num_kv_heads=1,
                                           parallel_block=True, logit_softcap=30.0)),
    "moe": ("moe", dict(scan_layers=True)),
}


def build(name: str, **model_keys):
  """A tiny model with a large init (std 0.5), so greedy decoding does not settle on one token."""
  c = load_config(name, "test")
  c.model.update(init_std=0.5, **model_keys)
  model = models.build_model(c.model, VOCAB)
  params = nn.unbox(model.init(jax.random.PRNGKey(1), jnp.zeros((1, 8), jnp.int32))["params"])
  return model, params


def full_logits(model, params, rows: list[np.ndarray]) -> list[np.ndarray]:
  """The plain forward pass over each unpadded row: logits [T_b, V]. One batch, right padded:
  causal attention never reads the padding after a token."""
  width = max(len(r) for r in rows)
  tokens_bt = np.zeros((len(rows), width), np.int32)
  for b, r in enumerate(rows):
    tokens_bt[b, :len(r)] = r
  logits_btv = np.asarray(jax.jit(model.apply)({"params": params}, jnp.asarray(tokens_bt)))
  return [logits_btv[b, :len(r)] for b, r in enumerate(rows)]


@pytest.fixture(scope="module", params=list(CASES))
def decoded(request):
  name, keys = CASES[request.param]
  model, params = build(name, **keys)
  kw = dict(seq_len=SEQ_LEN, max_new_tokens=NEW, key=jax.random.PRNGKey(0), with_logits=True)
  cached = gen.generate(model, params, PROMPTS, **kw)
  recomputed = gen.generate(model, params, PROMPTS, kv_cache=False, **kw)
  alone = gen.generate(model, params, PROMPTS[1:], **kw)  # the padded row on its own
  return model, params, cached, recomputed, alone


def test_cached_greedy_equals_recomputation(decoded):
  model, _, (tokens, _), (tokens_ref, _), _ = decoded
  assert gen.uses_cache(model, True) and not gen.uses_cache(model, False)
  assert tokens.shape == (len(PROMPTS), NEW)
  assert len(np.unique(tokens)) > 4  # not a constant continuation (greedy may still cycle)
  np.testing.assert_array_equal(tokens, tokens_ref)


def test_cached_logits_equal_the_full_forward(decoded):
  """Step i's logits = the full forward over prompt + the first i new tokens, at its end."""
  model, params, (tokens, logits_bnv), (_, logits_ref_bnv), _ = decoded
  rows = [np.concatenate([p, tokens[b, :-1]]).astype(np.int32) for b, p in enumerate(PROMPTS)]
  for b, (prompt, full_tv) in enumerate(zip(PROMPTS, full_logits(model, params, rows))):
    ref_nv = full_tv[len(prompt) - 1:]
    tol = LOGIT_TOL * np.abs(ref_nv).max()
    np.testing.assert_allclose(logits_bnv[b], ref_nv, rtol=0, atol=tol)
    np.testing.assert_allclose(logits_ref_bnv[b], ref_nv, rtol=0, atol=tol)
    assert np.array_equal(tokens[b], ref_nv.argmax(-1))  # greedy: each token is the argmax


def test_left_padded_row_equals_the_row_alone(decoded):
  _, _, (tokens, logits_bnv), _, (alone, alone_logits) = decoded
  np.testing.assert_array_equal(tokens[1], alone[0])
  np.testing.assert_allclose(logits_bnv[1], alone_logits[0], rtol=0,
                             atol=LOGIT_TOL * np.abs(alone_logits).max())


# ------------------------------------------------------------------------------------------
# The sampling rule against a float64 numpy reference.

def np_kept(logits_v: np.ndarray, temperature: float, top_k, top_p: float) -> np.ndarray:
  """Kept tokens: the top_k largest, then the smallest prefix (by descending probability of the
  distribution renormalised over those) whose mass reaches top_p."""
  z = logits_v.astype(np.float64) / temperature
  order = np.argsort(-z, kind="stable")
  kept = np.zeros(z.shape, bool)
  kept[order[:top_k or len(z)]] = True
  p = np.where(kept, np.exp(z - z.max()), 0.0)
  p /= p.sum()
  mass, out = 0.0, np.zeros(z.shape, bool)
  for i in order:
    if not kept[i] or mass >= top_p:
      break
    out[i] = True
    mass += p[i]
  return out


@pytest.mark.parametrize("temperature,top_k,top_p", [
    (1.0, None, 1.0), (0.7, 5, 1.0), (1.0, None, 0.9), (0.5, None, 0.5), (1.3, 10, 0.8),
    (1.0, 3, 0.999), (1.0, None, 1e-4), (2.0, 0, 0.95)])
def test_filter_logits_keeps_the_reference_set(temperature, top_k, top_p):
  logits_bv = np.random.default_rng(7).normal(0, 2.0, (16, 50)).astype(np.float32)
  out = np.asarray(gen.filter_logits(jnp.asarray(logits_bv), temperature, top_k, top_p))
  for b in range(len(logits_bv)):
    ref = np_kept(logits_bv[b], temperature, top_k, top_p)
    np.testing.assert_array_equal(np.isfinite(out[b]), ref)
    z = logits_bv[b].astype(np.float64) / temperature
    p_ref = np.where(ref, np.exp(z - z[ref].max()), 0.0)
    p_ref /= p_ref.sum()
    np.testing.assert_allclose(np.asarray(jax.nn.softmax(out[b])), p_ref, atol=1e-6)
    # top-p alone: the kept mass reaches top_p, and without its least likely token it does not.
    if not top_k:
      p_all = np.exp(z - z.max()) / np.exp(z - z.max()).sum()
      assert p_all[ref].sum() >= top_p - 1e-6
      assert p_all[ref].sum() - p_all[ref].min() < top_p + 1e-6


def test_samples_stay_in_the_kept_set_with_its_probabilities():
  logits_v = np.random.default_rng(8).normal(0, 1.5, 20).astype(np.float32)
  n = 20000
  logits_bv = jnp.broadcast_to(jnp.asarray(logits_v), (n, 20))
  draws = np.asarray(gen.sample_logits(logits_bv, jax.random.PRNGKey(0), 0.8, 8, 0.85))
  ref = np_kept(logits_v, 0.8, 8, 0.85)
  assert ref.sum() >= 2 and ref[draws].all()
  z = logits_v.astype(np.float64) / 0.8
  p_ref = np.where(ref, np.exp(z - z.max()), 0.0)
  p_ref /= p_ref.sum()
  freq = np.bincount(draws, minlength=20) / n
  np.testing.assert_allclose(freq, p_ref, atol=0.015)  # ~4 standard errors at n = 20000


def test_greedy_is_the_argmax_whatever_top_k_top_p():
  logits_bv = jnp.asarray(np.random.default_rng(9).normal(size=(4, 30)), jnp.float32)
  for top_k, top_p in ((None, 1.0), (3, 0.2)):
    out = gen.sample_logits(logits_bv, jax.random.PRNGKey(0), 0.0, top_k, top_p)
    np.testing.assert_array_equal(out, np.argmax(np.asarray(logits_bv), -1))


# ------------------------------------------------------------------------------------------
# Errors, families and the --mode sample wiring.

def test_too_long_is_one_config_error_naming_the_keys():
  """And with temperature, top-k and top-p both loops draw token i with fold_in(key, i): equal
  logits give equal samples, until the recomputed window slides past seq_len."""
  model, params = build("gpt")
  kw = dict(seq_len=SEQ_LEN, key=jax.random.PRNGKey(3), temperature=0.9, top_k=20, top_p=0.9)
  with pytest.raises(ConfigError) as e:
    gen.generate(model, params, PROMPTS, max_new_tokens=SEQ_LEN - 9 + 1, **kw)
  msg = str(e.value)
  assert "\n" not in msg
  assert "sample.max_new_tokens=24" in msg and "data.seq_len=32" in msg
  assert "sample.kv_cache=False" in msg
  # Exactly full is fine; recomputation slides its window past seq_len.
  cached, _ = gen.generate(model, params, PROMPTS, max_new_tokens=SEQ_LEN - 9, **kw)
  assert cached.shape == (2, SEQ_LEN - 9)
  recomputed, _ = gen.generate(model, params, PROMPTS, max_new_tokens=SEQ_LEN, kv_cache=False,
                               **kw)
  assert recomputed.shape == (2, SEQ_LEN)
  np.testing.assert_array_equal(cached, recomputed[:, :SEQ_LEN - 9])
  assert len(set(cached[0].tolist())) > 3


def test_which_models_have_a_cache():
  c = load_config("gpt", "test")
  assert gpt.decode_model(models.build_model(c.model, VOCAB)) is not None
  c.model.update(document_mask=True)
  assert gpt.decode_model(models.build_model(c.model, VOCAB, bos_id=1)) is None
  for name in ("ngpt", "gated_ngpt", "titans"):
    assert gpt.decode_model(models.build_model(load_config(name, "test").model, VOCAB)) is None
  # capacity dispatch decodes dense (dropless); the parameters are the same tree
  c = load_config("moe", "test")
  c.model.moe.dispatch = "capacity"
  c.model.remat = True
  decoder = gpt.decode_model(models.build_model(c.model, VOCAB))
  assert decoder.cfg.moe.dispatch == "dense" and not decoder.cfg.remat


@dataclasses.dataclass
class _Run:
  """What sample_workdir reads of a loaded run: the model, a byte tokenizer, a context."""
  model: object
  spec: object

  def context(self):
    return contextlib.nullcontext()


class _Bytes:
  def encode(self, text):
    return list(text.encode())

  def decode(self, ids):
    return bytes(int(i) % 128 for i in ids).decode()


def test_sample_mode_wiring(monkeypatch):
  model, params = build("gpt")
  run = _Run(model, type("Spec", (), {"tokenizer": _Bytes()})())
  monkeypatch.setattr(inference, "load_params", lambda config, workdir: (run, params, 0))
  c = load_config("gpt", "test")
  c.sample.update(prompts=("ab", "hello"), max_new_tokens=5, num_samples=2, temperature=0.0)
  texts = inference.sample_workdir(c, "unused")
  assert [t[:-5] for t in texts] == ["ab", "ab", "hello", "hello"]
  assert texts[0] == texts[1]  # greedy: both samples of a prompt agree
  c.sample.update(max_new_tokens=SEQ_LEN)
  with pytest.raises(ConfigError, match="sample.max_new_tokens=32"):
    inference.sample_workdir(c, "unused")
  c.sample.update(top_p=0.0)
  with pytest.raises(ConfigError, match="sample.top_p=0.0"):
    inference.sample_workdir(c, "unused")
