"""train.profile_steps: a jax.profiler trace of a window of steps, written into the workdir,
that changes nothing the run computes; a bad window is one ConfigError naming the key."""

import json
import os

import pytest

from jaxgpt import config as config_lib
from jaxgpt.errors import ConfigError
from jaxgpt.train import profile as profile_lib
from jaxgpt.train import run as train_run
from tests.helpers import load_config


def _losses(workdir):
  rows = [json.loads(line) for line in open(os.path.join(workdir, "metrics.jsonl"))]
  return [(r["step"], r["train_loss"], r.get("val_loss")) for r in rows if "train_loss" in r]


def test_trace_is_written_and_losses_do_not_change(tmp_path):
  plain, traced = str(tmp_path / "plain"), str(tmp_path / "traced")
  small = {"train__final_eval_tokens": 4096}
  a = train_run.train_and_evaluate(load_config("gpt", "test", **small), plain)
  b = train_run.train_and_evaluate(
      load_config("gpt", "test", train__profile_steps=(3, 6), **small), traced)
  found = profile_lib.trace_files(traced)
  assert any(f.endswith(".xplane.pb") for f in found), found
  assert all(os.sep + os.path.join("profile", "plugins", "profile") + os.sep in f for f in found)
  assert all(os.path.getsize(f) > 0 for f in found)
  assert profile_lib.trace_files(plain) == []
  assert _losses(plain) == _losses(traced)  # bitwise: the same steps on the same data
  assert a["final_val_loss"] == b["final_val_loss"] and b["steps"] == 12


def test_window_starts_and_stops_at_its_steps(tmp_path):
  window = profile_lib.Window(2, 4, str(tmp_path / "profile"))
  assert [s for s in range(6) if window.starts_before(s)] == [2, 3]  # (resumes start inside)
  window.start()
  assert window.active and not window.starts_before(3)
  assert [s for s in range(1, 4) if window.stops_after(s)] == []
  assert window.stops_after(4)
  window.close()
  assert not window.active and not window.starts_before(3)  # one trace per process
  assert any(f.endswith(".xplane.pb") for f in profile_lib.trace_files(str(tmp_path)))


def test_resumed_inside_the_window_traces_the_rest():
  window = profile_lib.Window(2, 6, "unused")
  assert window.starts_before(4) and not window.starts_before(6) and not window.starts_before(1)


@pytest.mark.parametrize("window", [(0, 13), (5, 5), (6, 2), (-1, 3), (3,), (1.5, 3), [2, 3, 4]])
def test_bad_window_is_one_config_error(window):
  config = load_config("gpt", "test", train__profile_steps=window)
  with pytest.raises(ConfigError) as e:
    config_lib.validate(config)
  text = str(e.value)
  assert text.startswith("train.profile_steps=") and "\n" not in text
  assert "train.steps=12" in text


def test_window_on_the_last_step_is_allowed():
  config_lib.validate(load_config("gpt", "test", train__profile_steps=(0, 12)))
