"""Config errors name the key, the value and what is allowed."""

import json
import os
import pathlib
import subprocess
import sys

import pytest

from jaxgpt import config as config_lib
from jaxgpt import registry
from jaxgpt.errors import ConfigError

ROOT = pathlib.Path(__file__).resolve().parents[1]


def load(name, variants=""):
  return config_lib.load_file(f"configs/{name}.py", variants)


@pytest.mark.parametrize("name,variants", [
    ("gpt", ("", "cpu", "test", "cpu,test")),
    ("gated_ngpt", ("", "cpu", "test", "seed_exact", "seed_exact,cpu")),
    ("ngpt", ("", "cpu", "test")),
    ("moe", ("", "cpu", "test")),
])
def test_config_variants_validate_and_build(name, variants):
  from jaxgpt import models
  for v in variants:
    c = load(name, v)
    config_lib.validate(c)
    models.build_model(c.model, 1024)  # model-level checks (e.g. knobs nGPT refuses)


def test_unknown_variant_named():
  with pytest.raises(ValueError, match="unknown config variant 'gpu'.*cpu, llama, qwen3, test"):
    load("gpt", "gpu")


def test_variants_run_in_the_given_order_whatever_the_command_line():
  from ml_collections import config_dict
  seen = []
  table = {k: (lambda c, k=k: seen.append(k)) for k in ("a", "b", "z")}
  c = config_lib.apply_variants(config_dict.ConfigDict(), "z,b,a", table, order=("a", "b"))
  assert seen == ["a", "b", "z"] and c.variants == "a,b,z"  # names not in `order` last
  seen.clear()
  config_lib.apply_variants(config_dict.ConfigDict(), "b,a", table)
  assert seen == ["b", "a"]  # no order: as given
  with pytest.raises(ValueError, match="unknown config variant 'gpu'"):
    config_lib.apply_variants(config_dict.ConfigDict(), "gpu,a", table, order=("a",))


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


def test_allowed_names_come_from_the_registries():
  """A registered entry is allowed at once; validation lists exactly the registered names."""
  c = load("gpt", "test")
  c.optimizer.schedule = "toy_step"
  with pytest.raises(ConfigError, match=str(registry.SCHEDULES.names()).replace("(", r"\(")
                     .replace(")", r"\)")):
    config_lib.validate(c)
  registry.SCHEDULES.register("toy_step", registry.Schedule(build=lambda o: lambda p: 1.0))
  try:
    config_lib.validate(c)
  finally:
    registry.SCHEDULES.unregister("toy_step")


def test_renamed_lazy_proj_freq_is_read_with_a_warning():
  c = load("gated_ngpt", "test")
  c.model.lazy_proj_freq = 5
  with pytest.warns(FutureWarning, match="model.lazy_proj_freq=5 is deprecated.*"
                    "optimizer.lazy_proj_freq"):
    config_lib.validate(c)
  assert c.optimizer.lazy_proj_freq == 5 and c.model.lazy_proj_freq is None
  # A checkpoint saved under the old key resumes without a config change.
  old = config_lib.to_dict(load("gated_ngpt", "test"))
  old["model"]["lazy_proj_freq"] = old["optimizer"].pop("lazy_proj_freq")
  assert config_lib.config_diff(old, config_lib.to_dict(load("gated_ngpt", "test"))) == {}
  old["model"]["lazy_proj_freq"] = 9
  assert set(config_lib.config_diff(old, config_lib.to_dict(load("gated_ngpt", "test")))) == {
      "optimizer.lazy_proj_freq"}


@pytest.mark.parametrize("args,expected", [
    (["--config.optimizer.name=foo"], "error: optimizer.name='foo' is not allowed; choose one of"),
    (["--config.optimizer.ns_steps=0"], "error: optimizer.ns_steps=0 must be an integer >= 1"),
    (["--config.train.stepz=3"], "error: unknown config key 'stepz'; Did you mean \"steps\""),
])
def test_cli_config_errors_are_one_line(tmp_path, args, expected):
  proc = subprocess.run(
      [sys.executable, "-m", "jaxgpt.main", "--config", "configs/gpt.py:test",
       "--workdir", str(tmp_path / "run"), *args], cwd=ROOT, capture_output=True, text=True,
      env=dict(os.environ, JAX_PLATFORMS="cpu"), timeout=300)
  assert proc.returncode == 2, proc.stderr[-2000:]
  lines = [line for line in proc.stderr.splitlines() if line.strip()]
  assert len(lines) == 1 and lines[0].startswith(expected), proc.stderr[-2000:]


@pytest.mark.parametrize("module,config", [("jaxgpt.main", "configs/gpt.py:gpu"),
                                           ("jaxgpt.sweep", "configs/sweeps/nested_grid.py:titan")])
def test_cli_unknown_variant_is_one_line(tmp_path, module, config):
  proc = subprocess.run(
      [sys.executable, "-m", module, "--config", config, "--workdir", str(tmp_path / "run")],
      cwd=ROOT, capture_output=True, text=True, env=dict(os.environ, JAX_PLATFORMS="cpu"),
      timeout=300)
  assert proc.returncode == 2, proc.stderr[-2000:]
  lines = [line for line in proc.stderr.splitlines() if line.strip()]
  assert len(lines) == 1 and "ConfigError: unknown config variant" in lines[0], proc.stderr
  assert lines[0].startswith(f"error: flag --config={config}: ")


def test_keys_added_since_at_their_defaults_are_no_change():
  """A workdir saved before a key existed resumes when the key sits at its base default."""
  from jaxgpt import config as config_lib
  from tests.helpers import load_config
  new = config_lib.to_dict(load_config("gpt", "test"))
  old = json.loads(json.dumps(new))
  del old["model"]["moe"], old["optimizer"]["router"]
  assert config_lib.config_diff(old, new) == {}
  new["optimizer"]["router"] = "muon"
  assert config_lib.config_diff(old, new) == {"optimizer.router": ("<absent>", "muon")}
