"""Config errors name the key, the value and what is allowed."""

import importlib.util
import pathlib

import pytest

from jaxgpt import config as config_lib

ROOT = pathlib.Path(__file__).resolve().parents[1]


def load(name, variants=""):
  spec = importlib.util.spec_from_file_location(name, ROOT / "configs" / f"{name}.py")
  mod = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(mod)
  return mod.get_config(variants)


@pytest.mark.parametrize("name,variants", [
    ("gpt", ("", "cpu", "test", "cpu,test")),
    ("gated_ngpt", ("", "cpu", "test", "seed_exact", "seed_exact,cpu")),
    ("ngpt", ("", "cpu", "test")),
])
def test_config_variants_validate_and_build(name, variants):
  from jaxgpt import models
  for v in variants:
    c = load(name, v)
    config_lib.validate(c)
    models.build_model(c.model, 1024)  # model-level checks (e.g. knobs nGPT refuses)


def test_unknown_variant_named():
  with pytest.raises(ValueError, match="unknown config variant 'gpu'.*cpu, test"):
    load("gpt", "gpu")


@pytest.mark.parametrize("key,value,pattern", [
    ("data.tokenizer", "wordpiece", r"data.tokenizer='wordpiece'.*'byte', 'bpe'"),
    ("optimizer.schedule", "step", r"optimizer.schedule='step'"),
    ("train.batch_size", 0, r"train.batch_size=0"),
    ("model.compute_dtype", "float16", r"model.compute_dtype='float16'"),
    ("optimizer.warmup_frac", 1.5, r"optimizer.warmup_frac=1.5"),
    ("mesh.data", 0, r"mesh.data=0"),
    ("optimizer.ns_steps", 0, r"optimizer.ns_steps=0"),
    ("optimizer.orthogonalize", "svd", r"optimizer.orthogonalize='svd'"),
    ("optimizer.update_scale", "big", r"optimizer.update_scale='big'"),
    ("optimizer.variance_reduction", "adam", r"optimizer.variance_reduction='adam'"),
    ("optimizer.name", "sgd", r"optimizer.name='sgd'"),
])
def test_bad_values_name_the_key(key, value, pattern):
  c = load("gpt", "test")
  section, name = key.split(".")
  c[section][name] = value
  with pytest.raises(ValueError, match=pattern):
    config_lib.validate(c)


def test_grad_accum_must_divide_batch():
  c = load("gpt", "test")
  c.train.grad_accum = 3
  with pytest.raises(ValueError, match="train.batch_size=4.*train.grad_accum=3"):
    config_lib.validate(c)


def test_shards_need_patterns_and_vocab():
  c = load("gpt", "test")
  c.data.name = "shards"
  with pytest.raises(ValueError, match="data.train_pattern"):
    config_lib.validate(c)
  c.data.train_pattern = "a*.bin"
  c.data.val_pattern = "b*.bin"
  with pytest.raises(ValueError, match="model.vocab_size"):
    config_lib.validate(c)


def test_unknown_key_refused():
  c = load("gpt", "test")
  with pytest.raises(AttributeError, match="no_such_key"):
    c.train.no_such_key = 1


def test_config_diff_names_keys():
  a = config_lib.to_dict(load("gpt", "test"))
  c = load("gpt", "test")
  c.train.steps = 99
  c.optimizer.lr = 0.5
  c.train.progress_bar = True  # free to change
  diff = config_lib.config_diff(a, config_lib.to_dict(c))
  assert set(diff) == {"train.steps", "optimizer.lr"}
