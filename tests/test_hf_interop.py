"""Hugging Face interop without torch: the layout conversions against what each layout computes
(float64 numpy), RoPE and RMSNorm against transformers' formulas, the byte tokenizer through
the `tokenizers` library, logits parity with the stored transformers fixtures
(scripts/make_hf_fixtures.py), export -> the fixture's layout, export -> import identity, the
error lines, and a run started from a folder (resumed without it). The live comparison with
transformers itself runs only where torch and transformers import (or JAXGPT_HF_PYTHON names a
Python that has them)."""

import json
import os
import pathlib
import shutil
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import tokenizers

pytest.importorskip("safetensors")  # the hf extra

from jaxgpt import config as config_lib  # noqa: E402
from jaxgpt import data  # noqa: E402
from jaxgpt.errors import ConfigError  # noqa: E402
from jaxgpt.export import folder as export_folder  # noqa: E402
from jaxgpt.hf import arch, store, weights  # noqa: E402
from jaxgpt.hf import init as hf_init  # noqa: E402
from jaxgpt.hf import tokenizer as hf_tokenizer  # noqa: E402
from jaxgpt.models import build_model, gpt, layers  # noqa: E402
from jaxgpt.train import run as train_run  # noqa: E402
from jaxgpt.train import setup  # noqa: E402

ROOT = pathlib.Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "fixtures" / "hf"
NAMES = ("llama_untied", "llama_tied", "qwen3_tied", "qwen3_untied")
# float32 logits of up to ~40 in magnitude, through two layers, two implementations: measured
# max |diff| 1.2e-5 (tied fixtures), 1.7e-6 (untied).
ATOL, RTOL = 1e-4, 1e-5


def gpt_config(variant: str, **model):
  cfg = config_lib.load(f"configs/gpt.py:{variant},test")
  for k, v in model.items():
    cfg.model[k] = v
  return cfg


def fixture_config(name: str, **model):
  return gpt_config("qwen3" if name.startswith("qwen3") else "llama", **model)


def random_params(model, seed: int = 0):
  """Parameters far from their init: norm scales 1 + 0.3 N(0, 1) (not 1, so w and 1 + w
  differ), everything else 0.2 N(0, 1)."""
  tokens = jnp.zeros((1, 8), jnp.int32)
  params = jax.tree.map(lambda x: x.unbox() if hasattr(x, "unbox") else x,
                        model.init(jax.random.PRNGKey(seed), tokens)["params"],
                        is_leaf=lambda x: hasattr(x, "unbox"))
  rng = np.random.default_rng(seed)

  def draw(path, x):
    z = rng.standard_normal(x.shape)
    is_scale = getattr(path[-1], "key", None) == "scale"
    return np.asarray(1 + 0.3 * z if is_scale else 0.2 * z, np.float32)

  return jax.tree_util.tree_map_with_path(draw, params)


# ------------------------------------------------------------------------------------------
# Layout conversions: what jaxgpt's kernel computes equals what the Linear weight computes.

def test_heads_in_matches_a_linear_viewed_as_heads():
  rng = np.random.default_rng(0)
  d, h, k = 6, 3, 4
  w_dhk, x_d = rng.standard_normal((d, h, k)), rng.standard_normal(d)
  w_od = weights.heads_in_to_linear(w_dhk)
  assert w_od.shape == (h * k, d)
  # transformers: q_proj(x).view(heads, head_dim)
  np.testing.assert_allclose((w_od @ x_d).reshape(h, k), np.einsum("d,dhk->hk", x_d, w_dhk),
                             rtol=1e-12)
  np.testing.assert_array_equal(weights.linear_to_heads_in(w_od, h, k), w_dhk)


def test_heads_out_matches_a_linear_of_the_flattened_heads():
  rng = np.random.default_rng(1)
  h, k, d = 3, 4, 6
  w_hkd, o_hk = rng.standard_normal((h, k, d)), rng.standard_normal((h, k))
  w_di = weights.heads_out_to_linear(w_hkd)
  assert w_di.shape == (d, h * k)
  # transformers: o_proj(attn_output.reshape(..., heads * head_dim))
  np.testing.assert_allclose(w_di @ o_hk.reshape(h * k), np.einsum("hk,hkd->d", o_hk, w_hkd),
                             rtol=1e-12)
  np.testing.assert_array_equal(weights.linear_to_heads_out(w_di, h, k), w_hkd)


def test_dense_kernels_transpose():
  rng = np.random.default_rng(2)
  w_io, x_i = rng.standard_normal((5, 7)), rng.standard_normal(5)
  np.testing.assert_allclose(weights.transpose(w_io) @ x_i, x_i @ w_io, rtol=1e-12)
  np.testing.assert_array_equal(weights.transpose(weights.transpose(w_io)), w_io)


def test_gqa_query_head_reads_kv_head_i_over_group():
  """transformers' repeat_kv gives query head i the kv head i // (H / N); so does jaxgpt's
  attention: with one kv head's values all 1 and the other's 0, the query heads that read it
  output 1."""
  b, t, h, n, k = 1, 3, 4, 2, 2
  q = jnp.zeros((b, t, h, k))
  kk = jnp.zeros((b, t, n, k))
  v = jnp.stack([jnp.zeros((b, t, k)), jnp.ones((b, t, k))], axis=2)  # kv head 1 is ones
  out = layers.causal_attention(q, kk, v)
  heads_reading_1 = [i for i in range(h) if float(out[0, -1, i, 0]) == 1.0]
  assert heads_reading_1 == [i for i in range(h) if i // (h // n) == 1] == [2, 3]


def test_rope_is_transformers_rotate_half():
  """transformers: inv_freq = theta^(-arange(0, K, 2) / K), emb = cat(freqs, freqs),
  q * cos + rotate_half(q) * sin; jaxgpt's apply_rope computes the same (float64 reference)."""
  theta, t, k = 5e5, 11, 8
  rng = np.random.default_rng(3)
  x = rng.standard_normal((1, t, 2, k)).astype(np.float32)
  inv_freq = 1.0 / theta ** (np.arange(0, k, 2, dtype=np.float64) / k)
  freqs = np.arange(t, dtype=np.float64)[:, None] * inv_freq[None]
  emb = np.concatenate([freqs, freqs], axis=-1)[None, :, None, :]
  x64 = x.astype(np.float64)
  rotate_half = np.concatenate([-x64[..., k // 2:], x64[..., :k // 2]], axis=-1)
  want = x64 * np.cos(emb) + rotate_half * np.sin(emb)
  sin, cos = layers.rope_tables(t, k, theta)
  got = np.asarray(layers.apply_rope(jnp.asarray(x), sin, cos))
  np.testing.assert_allclose(got, want, atol=2e-6)
  # the interleaved layout (pairs 2i, 2i+1) is a different function: no silent match
  x1, x2 = x64[..., 0::2], x64[..., 1::2]
  inter = np.stack([x1 * np.cos(emb[..., :k // 2]) - x2 * np.sin(emb[..., :k // 2]),
                    x2 * np.cos(emb[..., :k // 2]) + x1 * np.sin(emb[..., :k // 2])],
                   axis=-1).reshape(x.shape)
  assert np.abs(got - inter).max() > 0.1


def test_rmsnorm_weight_is_w_not_one_plus_w():
  """transformers' LlamaRMSNorm: weight * x / sqrt(mean(x^2) + eps); jaxgpt's scale is the
  same w (the 1 + w convention, e.g. Gemma's, would differ by x / rms)."""
  rng = np.random.default_rng(4)
  x, w, eps = rng.standard_normal((3, 6)), 1 + 0.3 * rng.standard_normal(6), 1e-5
  norm = layers.RMSNorm("embed", eps)
  got = norm.apply({"params": {"scale": jnp.asarray(w, jnp.float32)}},
                   jnp.asarray(x, jnp.float32))
  want = w * x / np.sqrt(np.mean(x ** 2, axis=-1, keepdims=True) + eps)
  np.testing.assert_allclose(np.asarray(got), want, rtol=1e-5)


def test_mlp_mult_gives_the_intermediate_size_exactly():
  for inter, d in ((11008, 4096), (88, 32), (72, 32), (5461, 2048), (13824, 5120), (17, 3)):
    assert int(arch.mlp_mult(inter, d) * d) == inter


# ------------------------------------------------------------------------------------------
# The byte tokenizer as a tokenizer.json.

PROBE = "The caf\u00e9 \u2014 \u65e5\u672c \U0001f642\n\ttabs  and spaces <|endoftext|>"


@pytest.mark.parametrize("boundary", [False, True])
def test_byte_tokenizer_json_ids_are_bytes(boundary):
  text = hf_tokenizer.tokenizer_json(data.ByteTokenizer(boundary=boundary))
  hf = tokenizers.Tokenizer.from_str(text)
  ids = hf.encode(PROBE, add_special_tokens=False).ids
  if boundary:  # the special token is a token, as in jaxgpt's data with a boundary
    assert hf.token_to_id("<|endoftext|>") == 256
    assert 256 in ids
    ids = hf.encode(PROBE.replace("<|endoftext|>", ""), add_special_tokens=False).ids
    text_bytes = list(PROBE.replace("<|endoftext|>", "").encode("utf-8"))
  else:
    text_bytes = list(PROBE.encode("utf-8"))
  assert ids == text_bytes
  assert hf.decode(ids) == bytes(text_bytes).decode("utf-8")
  assert hf.get_vocab_size() == (257 if boundary else 256)
  assert hf_tokenizer.is_byte_tokenizer(json.loads(text))
  # jaxgpt reads it back as a byte-level tokenizer.json with one byte per token
  tok = data.BPETokenizer(hf)
  assert tok.kind == "byte_level" and list(tok.token_bytes[:256]) == [1] * 256


def test_trained_bpe_is_not_the_byte_tokenizer():
  bpe = data.load_tokenizer("byte")  # the byte tokenizer, then a trained BPE for contrast
  assert hf_tokenizer.is_byte_tokenizer(json.loads(hf_tokenizer.tokenizer_json(bpe)))
  from jaxgpt.data import tokenizer as tokenizer_lib  # train_bpe: the contrast case only
  trained = tokenizer_lib.train_bpe(PROBE * 20, 300)
  assert not hf_tokenizer.is_byte_tokenizer(json.loads(trained.hf.to_str()))


# ------------------------------------------------------------------------------------------
# The fixtures: import -> logits; export -> the fixture's layout.

@pytest.mark.parametrize("name,scan", [(n, True) for n in NAMES]
                         + [("llama_untied", False), ("qwen3_tied", False)])
def test_fixture_logits_match_transformers(name, scan):
  folder = str(FIXTURES / name)
  model, params = hf_init.load_model(folder, fixture_config(name, scan_layers=scan))
  ids = np.load(FIXTURES / name / "input_ids.npy")
  want = np.load(FIXTURES / name / "logits.npy")
  got = np.asarray(model.apply({"params": params}, jnp.asarray(ids)))
  assert got.dtype == np.float32 and got.shape == want.shape
  np.testing.assert_allclose(got, want, atol=ATOL, rtol=RTOL)


def test_fixture_logits_fail_with_the_interleaved_rope_layout():
  """The parity test can fail: reading q and k as interleaved-RoPE weights (Meta's original
  layout, which the Llama conversion permutes) changes the logits far beyond the tolerance."""
  name = "llama_untied"
  model, params = hf_init.load_model(str(FIXTURES / name), fixture_config(name))
  k = 8
  perm = np.concatenate([np.arange(0, k, 2), np.arange(1, k, 2)])
  blocks = dict(params["blocks"])
  attn = dict(blocks["attn"])
  for key in ("q", "k"):
    attn[key] = {"kernel": np.asarray(attn[key]["kernel"])[..., perm]}
  blocks["attn"] = attn
  bad = dict(params, blocks=blocks)
  ids = np.load(FIXTURES / name / "input_ids.npy")
  got = np.asarray(model.apply({"params": bad}, jnp.asarray(ids)))
  assert np.abs(got - np.load(FIXTURES / name / "logits.npy")).max() > 100 * ATOL


CONFIG_FIELDS = ("vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers",
                 "num_attention_heads", "num_key_value_heads", "hidden_act", "rms_norm_eps",
                 "tie_word_embeddings", "model_type", "architectures")


@pytest.mark.parametrize("name", NAMES)
def test_export_gives_the_fixture_layout(name):
  folder = str(FIXTURES / name)
  cfg = fixture_config(name)
  model, params = hf_init.load_model(folder, cfg)
  cfg.export.format = "hf"
  vocab = cfg.model.vocab_size
  arch_name, tensors, texts = export_folder.folder_contents(
      cfg, params, vocab, None, data.ByteTokenizer())
  ref = store.read_tensors(folder)
  assert arch_name == json.loads((FIXTURES / name / "config.json").read_text())[
      "architectures"][0]
  assert sorted(tensors) == sorted(ref)
  for key, w in tensors.items():
    assert w.dtype == np.float32 and w.shape == ref[key].shape, key
    np.testing.assert_array_equal(w, ref[key], err_msg=key)
  ours = json.loads(texts["config.json"])
  theirs = json.loads((FIXTURES / name / "config.json").read_text())
  for key in CONFIG_FIELDS:
    assert ours[key] == theirs[key], key
  assert ours["head_dim"] == theirs.get("head_dim", theirs["hidden_size"]
                                        // theirs["num_attention_heads"])
  assert ours["rope_parameters"]["rope_theta"] == theirs["rope_parameters"]["rope_theta"]


# ------------------------------------------------------------------------------------------
# Export -> import: identity; the jaxgpt format for any model.

def export_random(tmp_path, cfg, fmt: str, seed: int = 0):
  """A random model of `cfg`, exported in `fmt` to tmp_path/fmt: (folder, model, params)."""
  cfg.export.format = fmt
  vocab = 256
  model = build_model(cfg.model, vocab)
  params = random_params(model, seed)
  _, tensors, texts = export_folder.folder_contents(cfg, params, vocab, None,
                                                    data.ByteTokenizer())
  out = str(tmp_path / fmt)
  store.write_folder(out, tensors, texts)
  export_folder.verify(out, tensors)
  return out, model, params


@pytest.mark.parametrize("variant,model_keys", [
    ("llama", dict(num_kv_heads=2, scan_layers=True)),
    ("qwen3", dict(num_kv_heads=1, scan_layers=False, head_dim=16)),
])
def test_export_then_import_is_identity(tmp_path, variant, model_keys):
  cfg = gpt_config(variant, **model_keys)
  out, model, params = export_random(tmp_path, cfg, "hf")
  assert sorted(os.listdir(out)) == ["config.json", "generation_config.json",
                                     "model.safetensors", "tokenizer.json",
                                     "tokenizer_config.json"]
  assert not [p for p in os.listdir(tmp_path) if p.startswith(".")]  # no temp folder left
  # the folder sets the model keys; the parameter layout (scanned or not) stays the run's own
  back_model, back = hf_init.load_model(out, gpt_config(variant,
                                                        scan_layers=model_keys["scan_layers"]))
  for (pa, a), (pb, b) in zip(jax.tree_util.tree_leaves_with_path(params),
                              jax.tree_util.tree_leaves_with_path(back), strict=True):
    assert pa == pb
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
  ids = jnp.asarray(np.random.default_rng(0).integers(0, 256, (2, 12)), jnp.int32)
  np.testing.assert_array_equal(np.asarray(model.apply({"params": params}, ids)),
                                np.asarray(back_model.apply({"params": back}, ids)))


def test_safetensors_format_writes_any_model_with_jaxgpt_config(tmp_path):
  """ReLU^2, soft-cap, U-net skips: no transformers counterpart, but the jaxgpt folder holds
  it and rebuilds the same function."""
  cfg = gpt_config("llama", mlp_act="relu2", logit_softcap=30.0, num_layers=4,
                   encoder_layers=1)
  out, model, params = export_random(tmp_path, cfg, "safetensors")
  back_model, back, meta = store.load_jaxgpt(out)
  assert meta["config"]["model"]["mlp_act"] == "relu2"
  ids = jnp.asarray(np.random.default_rng(0).integers(0, 256, (2, 12)), jnp.int32)
  np.testing.assert_array_equal(np.asarray(model.apply({"params": params}, ids)),
                                np.asarray(back_model.apply({"params": back}, ids)))
  # and train.init_from takes it, building the model keys from it
  _, again = hf_init.load_model(out, gpt_config("llama"))
  for a, b in zip(jax.tree.leaves(params), jax.tree.leaves(again), strict=True):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_write_folder_replaces_whole_and_leaves_nothing_on_error(tmp_path):
  out = tmp_path / "hf"
  store.write_folder(out, {"a": np.ones(3, np.float32)}, {"config.json": "{}\n"})
  with pytest.raises(TypeError):  # a text that is not text: fails midway
    store.write_folder(out, {"b": np.zeros(2, np.float32)}, {"x.json": "{}", "y": 3})
  assert sorted(os.listdir(tmp_path)) == ["hf"]  # no temp folder left
  assert list(store.read_tensors(out)) == ["a"]  # the previous folder, intact
  store.write_folder(out, {"b": np.zeros(2, np.float32)}, {"config.json": "{}\n"})
  assert list(store.read_tensors(out)) == ["b"] and sorted(os.listdir(tmp_path)) == ["hf"]


# ------------------------------------------------------------------------------------------
# Error lines.

@pytest.mark.parametrize("keys,knob", [
    (dict(mlp_act="relu2"), "model.mlp_act='relu2'"),
    (dict(mlp_act="silu2"), "model.mlp_act='silu2'"),
    (dict(logit_softcap=30.0), "model.logit_softcap=30.0"),
    (dict(num_layers=4, encoder_layers=1), "model.encoder_layers=1"),
    (dict(parallel_block=True), "model.parallel_block=True"),
    (dict(name="ngpt"), "model.name='ngpt'"),
    (dict(name="moe"), "model.name='moe'"),
    (dict(name="titans"), "model.name='titans'"),
])
def test_no_counterpart_is_one_line_naming_the_knob(keys, knob):
  cfg = gpt_config("llama", **keys)
  cfg.export.format = "hf"
  with pytest.raises(ConfigError) as e:
    export_folder.check_exportable(cfg)
  assert str(e.value).startswith(knob) and "\n" not in str(e.value)


def copy_fixture(tmp_path, name="llama_untied") -> pathlib.Path:
  out = tmp_path / name
  shutil.copytree(FIXTURES / name, out)
  return out


def edit_config(folder: pathlib.Path, **changes) -> None:
  cfg = json.loads((folder / "config.json").read_text())
  cfg.update(changes)
  (folder / "config.json").write_text(json.dumps(cfg))


def import_error(folder) -> str:
  with pytest.raises(ConfigError) as e:
    hf_init.load_model(str(folder), gpt_config("llama"))
  assert "\n" not in str(e.value)
  return str(e.value)


def test_import_errors_name_the_file_and_key(tmp_path):
  folder = copy_fixture(tmp_path)
  (folder / "config.json").unlink()
  assert import_error(folder) == f"{folder}: no config.json (a Hugging Face checkpoint " \
                                 "folder has one)"
  assert "no such folder" in import_error(tmp_path / "nowhere")

  folder = copy_fixture(tmp_path / "a")
  edit_config(folder, architectures=["GPT2LMHeadModel"], model_type="gpt2")
  msg = import_error(folder)
  assert msg.startswith(f"{folder / 'config.json'}: architecture 'GPT2LMHeadModel' is not one")

  folder = copy_fixture(tmp_path / "b")
  edit_config(folder, intermediate_size=96)
  assert import_error(folder) == (f"{folder / 'model.safetensors'}: "
                                  "model.layers.0.mlp.gate_proj.weight has shape (88, 32) but "
                                  "config.json implies (96, 32)")

  folder = copy_fixture(tmp_path / "c")
  edit_config(folder, num_hidden_layers=3)
  assert "no tensor model.layers.2.input_layernorm.weight" in import_error(folder)

  folder = copy_fixture(tmp_path / "d")
  edit_config(folder, rope_parameters={"rope_type": "llama3", "rope_theta": 5e5, "factor": 8})
  assert "rope_type='llama3'" in import_error(folder)

  folder = copy_fixture(tmp_path / "e")
  edit_config(folder, hidden_act="gelu")
  assert "hidden_act='gelu'" in import_error(folder)

  folder = copy_fixture(tmp_path / "f")
  (folder / "model.safetensors").unlink()
  assert "no model.safetensors" in import_error(folder)


def test_import_into_another_family_is_refused(tmp_path):
  cfg = config_lib.load("configs/ngpt.py:test")
  cfg.train.init_from = str(FIXTURES / "llama_tied")
  with pytest.raises(ConfigError, match="model.name='ngpt'"):
    hf_init.apply(cfg)


def test_apply_builds_the_model_keys_and_says_which(capsys):
  cfg = gpt_config("llama", d_model=64)
  cfg.train.init_from = str(FIXTURES / "qwen3_tied")
  cfg.model.name = "moe"  # another family: refused, naming model.name
  with pytest.raises(ConfigError, match="model.name='moe'"):
    hf_init.apply(cfg)
  cfg = gpt_config("llama", d_model=64)
  cfg.train.init_from = str(FIXTURES / "qwen3_tied")
  lines = hf_init.apply(cfg)
  assert "model.d_model: 64 -> 32" in lines and "model.qk_norm: False -> True" in lines
  assert "model.head_dim: None -> 16" in lines and "model.num_kv_heads: 4 -> 1" in lines
  assert "model.d_model: 64 -> 32" in capsys.readouterr().err
  assert hf_init.apply(cfg) == []  # built: a second call changes nothing


# ------------------------------------------------------------------------------------------
# Training from a folder; resuming ignores it; vocabularies above 65,536.

def test_train_from_folder_then_resume_ignores_it(tmp_path, capsys):
  src = gpt_config("llama", num_kv_heads=2)
  out, _, params = export_random(tmp_path, src, "hf")
  cfg = gpt_config("llama", num_kv_heads=4)
  cfg.data.tokenizer = "bpe"  # the folder's byte tokenizer.json sets it back to "byte"
  cfg.train.update(steps=2, eval_every=2, init_from=out)
  cfg.data.data_dir = str(tmp_path / "data")
  hf_init.apply(cfg)
  assert cfg.data.tokenizer == "byte" and cfg.model.num_kv_heads == 2
  run = setup.build(cfg)
  state = run.init_state()
  for a, b in zip(jax.tree.leaves(params), jax.tree.leaves(state.params), strict=True):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
  workdir = str(tmp_path / "run")
  summary = train_run.train_and_evaluate(cfg, workdir)
  assert summary["steps"] == 2 and np.isfinite(summary["final_val_loss"])
  assert "starting from the weights of train.init_from" in capsys.readouterr().err
  train_run.train_and_evaluate(cfg, workdir)
  assert "resuming from it; train.init_from=" in capsys.readouterr().err


def test_vocabulary_above_uint16_trains_on_uint32_shards(tmp_path):
  """A 70,000-id checkpoint: the shards holding its ids are uint32 (header version 2), and the
  run builds, loads the weights and takes a step on them."""
  vocab = 70_000
  folder = tmp_path / "big"
  rng = np.random.default_rng(0)
  hf_cfg = dict(architectures=["LlamaForCausalLM"], model_type="llama", vocab_size=vocab,
                hidden_size=8, intermediate_size=16, num_hidden_layers=1,
                num_attention_heads=2, num_key_value_heads=1, tie_word_embeddings=True)
  keys = arch.model_keys(hf_cfg, "config.json")[1]
  gcfg = gpt.gpt_config(gpt_config("llama", **{k: v for k, v in keys.items() if k != "name"})
                        .model, vocab)
  shapes = weights.expected_shapes(gcfg)
  store.write_folder(folder, {k: rng.standard_normal(s).astype(np.float32) * 0.1
                              for k, s in shapes.items()}, {"config.json": json.dumps(hf_cfg)})
  shards = tmp_path / "shards"
  shards.mkdir()
  for split in ("train", "val"):
    data.write_shard(str(shards / f"{split}_000.bin"), rng.integers(0, vocab, 4096),
                     vocab_size=vocab)
    assert np.fromfile(shards / f"{split}_000.bin", "<i4", 2)[1] == 2  # version 2: uint32
  cfg = gpt_config("llama")
  cfg.data.update(name="shards", train_pattern=str(shards / "train_*.bin"),
                  val_pattern=str(shards / "val_*.bin"), seq_len=16)
  cfg.train.update(steps=1, eval_every=1, eval_tokens=64, init_from=str(folder))
  summary = train_run.train_and_evaluate(cfg, str(tmp_path / "run"))
  assert cfg.model.vocab_size == vocab and np.isfinite(summary["final_val_loss"])
  assert summary["final_val_loss"] > 10  # ~ln(70,000) = 11.2 from near-uniform logits


# ------------------------------------------------------------------------------------------
# Live: transformers loads an exported folder (only where torch + transformers are at hand).

def _hf_python() -> str | None:
  """A Python with torch and transformers: $JAXGPT_HF_PYTHON, else this one if it has them."""
  env = os.environ.get("JAXGPT_HF_PYTHON")
  if env:
    return env
  try:
    import torch  # noqa: F401
    import transformers  # noqa: F401
  except ImportError:
    return None
  return sys.executable


@pytest.mark.skipif(_hf_python() is None, reason="needs torch + transformers (or "
                    "JAXGPT_HF_PYTHON naming a Python that has them)")
@pytest.mark.parametrize("variant", ["llama", "qwen3"])
def test_live_transformers_loads_the_export(tmp_path, variant):
  cfg = gpt_config(variant, num_kv_heads=2)
  out, model, params = export_random(tmp_path, cfg, "hf")
  ids = np.random.default_rng(1).integers(0, 256, (2, 16)).astype(np.int32)
  np.save(os.path.join(out, "input_ids.npy"), ids)
  np.save(os.path.join(out, "logits.npy"),
          np.asarray(model.apply({"params": params}, jnp.asarray(ids))))
  proc = subprocess.run([_hf_python(), str(ROOT / "scripts" / "hf_compare.py"), out],
                        capture_output=True, text=True)
  assert proc.returncode == 0, proc.stderr[-3000:]
  result = json.loads(proc.stdout.strip().splitlines()[-1])
  assert result["max_abs_diff"] < ATOL and result["tokenizer_ids_are_bytes"]
