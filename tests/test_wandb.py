"""log.wandb: the optional Weights & Biases sink, checked offline (WANDB_MODE=offline, WANDB_DIR
in tmp): the offline run holds the rows of metrics.jsonl, the flattened config, the summary and
curves.png; a sweep's trials are W&B runs grouped by the study; without the package the flag is
one error line; and a run without it never imports wandb (nor lm-eval)."""

import glob
import json
import os
import pathlib
import struct
import subprocess
import sys
import time
import types
import zlib

import pytest

from jaxgpt import config as config_lib
from jaxgpt.sweep import cohort, runner
from jaxgpt.train import run as train_run
from jaxgpt.train import tracking
from tests.helpers import load_config
from tests.sweep_closed_form import closed_form, one_group

ROOT = pathlib.Path(__file__).resolve().parents[1]
SMALL = {"train__final_eval_tokens": 4096}


def wandb_records(path: str) -> list:
  """The records of an offline run's .wandb file, parsed with wandb's own protobuf `Record`
  (wandb 0.2x+ ships no Python reader). The file: ":W&B", magic 0xBEE1, version 0, then 32 KiB
  blocks of chunks, each with a header (crc32 of type + data, length, type: 1 full, 2 first,
  3 middle, 4 last); a block's tail shorter than a header is padding."""
  from wandb.proto import wandb_internal_pb2 as pb
  data = open(path, "rb").read()
  assert data[:4] == b":W&B" and struct.unpack("<HB", data[4:7]) == (0xBEE1, 0)
  block, pos, raw, pending = 32768, 7, [], b""
  while pos + 7 <= len(data):
    left = block - pos % block
    crc, length, kind = struct.unpack("<IHB", data[pos:pos + 7]) if left >= 7 else (0, 0, 0)
    if kind == 0:  # padding to the block's end
      pos += left
      continue
    chunk = data[pos + 7:pos + 7 + length]
    assert zlib.crc32(chunk, zlib.crc32(bytes([kind]))) == crc, f"bad chunk at byte {pos}"
    pos += 7 + length
    pending = chunk if kind in (1, 2) else pending + chunk
    if kind in (1, 4):
      raw.append(pending)
  out = []
  for r in raw:
    rec = pb.Record()
    rec.ParseFromString(r)
    out.append(rec)
  return out


def complete_records(path: str, timeout_s: float = 60.0) -> list:
  """The records of a finished offline run: wandb's service may still be writing the file when
  `finish()` returns, so read until every chunk checks out and the exit record is there."""
  deadline = time.time() + timeout_s
  while True:
    try:
      recs = wandb_records(path)
      if any(r.WhichOneof("record_type") == "exit" for r in recs):
        return recs
    except AssertionError:
      if time.time() > deadline:
        raise
    assert time.time() < deadline, f"{path} has no exit record"
    time.sleep(0.2)


def offline_run(path: str) -> dict:
  """One offline run's run record, config, history rows (by step) and summary."""
  recs = complete_records(path)
  run = next(r.run for r in recs if r.WhichOneof("record_type") == "run")
  history = {}
  for r in recs:
    if r.WhichOneof("record_type") == "history":
      row = {i.key or "/".join(i.nested_key): json.loads(i.value_json) for i in r.history.item}
      history[row["_step"]] = row
  summary = {}
  for r in recs:
    if r.WhichOneof("record_type") == "summary":
      summary.update({u.key: json.loads(u.value_json) for u in r.summary.update if u.key})
  config = {u.key: json.loads(u.value_json) for u in run.config.update}
  return {"run": run, "config": config, "history": history, "summary": summary}


def _offline_files(wandb_dir) -> list[str]:
  return sorted(glob.glob(os.path.join(str(wandb_dir), "wandb", "offline-run-*", "*.wandb")))


@pytest.fixture
def offline(tmp_path, monkeypatch):
  pytest.importorskip("wandb")
  wandb_dir = tmp_path / "wandb_dir"
  wandb_dir.mkdir()
  monkeypatch.setenv("WANDB_MODE", "offline")
  monkeypatch.setenv("WANDB_DIR", str(wandb_dir))
  monkeypatch.setenv("WANDB_SILENT", "true")
  return wandb_dir


def test_single_run_logs_metrics_config_summary_and_curves(tmp_path, offline):
  workdir = str(tmp_path / "wb_run")
  summary = train_run.train_and_evaluate(load_config("gpt", "test", log__wandb=True, **SMALL),
                                         workdir)
  [path] = _offline_files(offline)
  got = offline_run(path)
  run_id = open(os.path.join(workdir, tracking.RUN_ID_FILE)).read().strip()
  assert got["run"].run_id == run_id and got["run"].display_name == "wb_run"
  assert got["run"].project == "jaxgpt"
  assert got["config"]["model.d_model"] == 32 and got["config"]["optimizer.name"] == "muon"
  # Every metrics.jsonl row is a W&B row at its step, with the same numbers.
  rows = [json.loads(line) for line in open(os.path.join(workdir, "metrics.jsonl"))]
  by_step: dict = {}
  for r in rows:
    by_step.setdefault(r["step"], {}).update(
        {k: v for k, v in r.items() if k != "step" and v is not None})
  assert sorted(got["history"]) == sorted(by_step) == [2, 4, 6, 8, 10, 12]
  for step, values in by_step.items():
    logged = got["history"][step]
    assert {k: logged[k] for k in values} == values, step
  assert {"train_loss", "val_loss", "lr", "final_val_loss"} <= set(got["history"][12])
  assert got["history"][12]["curves/_type"] == "image-file"  # curves.png
  assert got["summary"]["final_val_loss"] == summary["final_val_loss"]
  assert got["summary"]["stop_reason"] == "steps" and "curve" not in got["summary"]


def test_sweep_trials_are_named_and_grouped_by_study(tmp_path):
  pytest.importorskip("wandb")  # log.wandb=True is refused without it
  s = config_lib.load_file("configs/sweeps/grid2d.py", "test")
  overrides = s.base.overrides
  overrides = dict(overrides.to_dict() if hasattr(overrides, "to_dict") else overrides)
  s.unlock()
  s.base.overrides = dict(overrides, log={"wandb": True})
  s.lock()
  seen = []

  def record(configs, workdir, **kw):
    seen.extend((c.log.wandb_group, c.log.wandb_name) for c in configs)
    return closed_form(configs, workdir, **kw)

  runner.run_worker(s, str(tmp_path), train_fn=record, group_fn=one_group, progress=False,
                    poll_s=0.05)
  assert seen and {g for g, _ in seen} == {s.name}
  names = [n for _, n in seen]
  assert len(set(names)) == len(names)
  assert all(n.startswith(f"{s.name}-t") for n in names)


def test_cohort_trials_are_w_and_b_runs_in_their_group(tmp_path, offline):
  configs = [load_config("gpt", "test", log__wandb=True, **SMALL) for _ in range(2)]
  for i, c in enumerate(configs):
    c.train.seed = i
  members = [types.SimpleNamespace(trial=types.SimpleNamespace(number=n)) for n in (7, 8)]
  runner.name_trials(configs, members, "study", "study-stage2")
  summaries = cohort.train_cohort(configs, str(tmp_path / "cohort"), solo_steps=0)
  runs = [offline_run(p) for p in _offline_files(offline)]
  assert sorted(r["run"].display_name for r in runs) == ["study-stage2-t0007",
                                                         "study-stage2-t0008"]
  assert {r["run"].run_group for r in runs} == {"study"}
  for r in runs:
    i = int(r["run"].display_name[-1]) - 7
    assert r["summary"]["final_val_loss"] == summaries[i]["final_val_loss"]
    assert r["config"]["train.seed"] == i and sorted(r["history"]) == [2, 4, 6, 8, 10, 12]


def _python(code: str, tmp_path) -> subprocess.CompletedProcess:
  return subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                        env=dict(os.environ, JAX_PLATFORMS="cpu", PYTHONPATH=str(ROOT)),
                        timeout=600)


@pytest.mark.slow
def test_without_the_package_the_flag_is_one_error_line(tmp_path):
  code = ("import sys; sys.modules['wandb'] = None  # as if not installed\n"
          "from jaxgpt import main\n"
          f"sys.argv = ['main', '--config', 'configs/gpt.py:test', '--workdir', "
          f"{str(tmp_path / 'w')!r}, '--config.log.wandb=True']\n"
          "main.run()\n")
  proc = _python(code, tmp_path)
  lines = [line for line in proc.stderr.splitlines() if line.strip()]
  assert proc.returncode == 2 and len(lines) == 1, proc.stderr[-2000:]
  assert lines[0].startswith("error: log.wandb=True needs the wandb package")
  assert "pip install 'jaxgpt[wandb]'" in lines[0]
  assert not os.path.exists(tmp_path / "w" / "checkpoints")


@pytest.mark.slow
def test_a_run_without_the_flag_imports_neither_wandb_nor_lm_eval(tmp_path):
  code = ("import sys\n"
          "from jaxgpt import main  # what the entry point imports\n"
          "from jaxgpt.train import run\n"
          "from tests.helpers import load_config\n"
          "c = load_config('gpt', 'test', train__steps=4, train__eval_every=2, "
          "train__final_eval_tokens=1024)\n"
          f"run.train_and_evaluate(c, {str(tmp_path / 'w')!r})\n"
          "print(sorted({m.split('.')[0] for m in sys.modules} & {'wandb', 'lm_eval'}))\n")
  proc = _python(code, tmp_path)
  assert proc.returncode == 0, proc.stderr[-2000:]
  assert proc.stdout.strip().splitlines()[-1] == "[]"
  assert os.path.exists(tmp_path / "w" / "summary.json")
