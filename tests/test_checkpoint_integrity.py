"""Checkpoint integrity: fingerprints, fallback past damaged steps, failed writes.

Small pytrees and a real Orbax manager (`checkpoint.manager`); the training loop is not used.
"""

import errno
import json
import os
import re
import shutil
import subprocess

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
import pytest

from jaxgpt.train import checkpoint as ckpt


def _state(seed: int, incompressible: bool = True) -> dict:
  """A small train-state-like pytree; `w` dominates the bytes on disk."""
  r = np.random.default_rng(seed)
  w = (r.integers(0, 2**32, (256, 256), dtype=np.uint32) if incompressible  # zstd keeps it raw
       else r.standard_normal((256, 256)).astype(np.float32))
  return {"step": jnp.int32(seed),
          "params": {"w": jnp.asarray(w), "b": [jnp.zeros(3), jnp.full(4, seed, jnp.bfloat16)]},
          "opt_state": {"mu": {"w": jnp.full((16, 16), float(seed))}}}


def _abstract(tree):
  return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding), tree)


def _save_steps(directory, steps, incompressible=True, **kw):
  mngr = ckpt.manager(str(directory), keep_latest=kw.pop("keep_latest", 5), keep_best=1, **kw)
  for s in steps:
    ckpt.save(mngr, s, _state(s, incompressible), {"pos": s, "shard": "a"},
              {"step": s, "train_time_s": 1.5 * s, "best": float("inf")}, 1.0 / s)
  ckpt.wait(mngr)
  return mngr


def _assert_tree_equal(a, b):
  la, lb = jax.tree.leaves(a), jax.tree.leaves(b)
  assert len(la) == len(lb)
  for x, y in zip(la, lb):
    assert np.asarray(x).dtype == np.asarray(y).dtype
    np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def _zero_middle_of_largest_array_file(step_dir) -> str:
  """Zeroes 64 bytes in the middle of the biggest data file under `step_dir/state/`."""
  files = []
  for root, _, names in os.walk(os.path.join(step_dir, "state")):
    for name in names:
      path = os.path.join(root, name)
      rel = os.path.relpath(path, step_dir)
      if "metadata" in rel.lower() or name.startswith("_") or name.startswith("manifest") \
          or name.endswith(".txt"):
        continue
      files.append((os.path.getsize(path), path))
  size, path = max(files)
  assert "/d/" in path and size > 10_000, (size, path)  # an OCDBT data file holding the arrays
  with open(path, "r+b") as f:
    f.seek(size // 2 - 32)
    before = f.read(64)
    f.seek(size // 2 - 32)
    f.write(b"\0" * 64)
  assert before != b"\0" * 64  # the bytes really changed
  return path


def _fallback_lines(err: str) -> list[str]:
  return [line for line in err.splitlines() if re.match(r"checkpoint \d+ ", line)]


def test_roundtrip_is_verified(tmp_path):
  mngr = _save_steps(tmp_path / "ck", [3])
  assert os.path.isdir(tmp_path / "ck" / "3" / "fingerprint")
  fp = json.loads((tmp_path / "ck" / "3" / "fingerprint" / "metadata").read_text())
  assert set(fp["state"]) == {"step", "params/w", "params/b/0", "params/b/1", "opt_state/mu/w"}
  r = ckpt.restore_latest_good(mngr, _abstract(_state(0)))
  assert (r.step, r.verified) == (3, True)
  _assert_tree_equal(r.state, _state(3))
  assert r.data == {"pos": 3, "shard": "a"} and r.meta["best"] == float("inf")
  state, data, meta = ckpt.restore(mngr, _abstract(_state(0)))  # the old API, verified too
  _assert_tree_equal(state, _state(3))
  assert ckpt.restore_latest_good(ckpt.manager(str(tmp_path / "empty"), keep_latest=2,
                                               keep_best=0), _abstract(_state(0))) is None


@pytest.mark.parametrize("incompressible", [True, False], ids=["raw-bytes", "zstd"])
def test_zeroed_array_bytes_fall_back_to_older(tmp_path, capsys, incompressible):
  """64 zeroed bytes in an array file: silently wrong data (raw zstd blocks) or a decode error;
  either way step 12 is skipped, kept as 12.damaged, and step 6 restores exactly."""
  d = tmp_path / "ck"
  mngr = _save_steps(d, [6, 12], incompressible)
  _zero_middle_of_largest_array_file(d / "12")
  capsys.readouterr()
  r = ckpt.restore_latest_good(mngr, _abstract(_state(0, incompressible)))
  assert r.step == 6 and r.verified
  _assert_tree_equal(r.state, _state(6, incompressible))
  assert r.meta["step"] == 6 and r.data["pos"] == 6
  lines = _fallback_lines(capsys.readouterr().err)
  assert len(lines) == 1, lines
  assert re.fullmatch(r"checkpoint 12 is damaged \(state/params/w: .+\): falling back to "
                      r"checkpoint 6", lines[0]), lines
  if incompressible:
    assert "bytes differ from the fingerprint" in lines[0]
  assert sorted(os.listdir(d)) == ["12.damaged", "6"]
  assert mngr.all_steps() == [6] and mngr.latest_step() == 6
  fresh = ckpt.manager(str(d), keep_latest=5, keep_best=1)  # Orbax ignores (and keeps) it
  fresh.reload()
  assert fresh.all_steps() == [6] and fresh.latest_step() == 6
  fresh.wait_until_finished()
  assert os.path.isdir(d / "12.damaged" / "state")
  # Training on saves step 12 again; the damaged copy stays aside.
  ckpt.save(fresh, 12, _state(12), {"pos": 12}, {"step": 12}, None)
  ckpt.wait(fresh)
  assert ckpt.restore_latest_good(fresh, _abstract(_state(0))).step == 12
  assert sorted(os.listdir(d)) == ["12", "12.damaged", "6"]


def test_damaged_meta_falls_back_for_full_and_meta_only_restores(tmp_path, capsys):
  d = tmp_path / "ck"
  mngr = _save_steps(d, [6, 12])
  path = d / "12" / "meta" / "metadata"
  raw = bytearray(path.read_bytes())
  mid = len(raw) // 2
  raw[max(0, mid - 32):mid + 32] = bytes(len(raw[max(0, mid - 32):mid + 32]))
  path.write_bytes(bytes(raw))
  r = ckpt.restore_latest_good(mngr, items=("meta",))  # the cohort's first look
  assert r.step == 6 and r.meta["step"] == 6 and r.state is None and r.data is None
  lines = _fallback_lines(capsys.readouterr().err)
  assert len(lines) == 1 and lines[0].startswith("checkpoint 12 is damaged (meta: ") \
      and lines[0].endswith("): falling back to checkpoint 6"), lines
  r = ckpt.restore_latest_good(mngr, _abstract(_state(0)))
  assert r.step == 6
  _assert_tree_equal(r.state, _state(6))


def test_valid_json_with_other_content_is_caught(tmp_path, capsys):
  d = tmp_path / "ck"
  mngr = _save_steps(d, [6, 12, 18])
  (d / "18" / "meta" / "metadata").write_text(json.dumps({"step": 18, "train_time_s": 0.0}))
  fp_path = d / "12" / "fingerprint" / "metadata"
  fp = json.loads(fp_path.read_text())
  fp["state"]["params/w"]["hash"] = "0" * 64
  fp_path.write_text(json.dumps(fp))
  r = ckpt.restore_latest_good(mngr, _abstract(_state(0)))
  assert r.step == 6
  lines = _fallback_lines(capsys.readouterr().err)
  assert lines == [
      "checkpoint 18 is damaged (meta: content differs from the fingerprint): falling back to "
      "checkpoint 12",
      "checkpoint 12 is damaged (fingerprint: its own hash does not match): falling back to "
      "checkpoint 6"], lines
  assert sorted(os.listdir(d)) == ["12.damaged", "18.damaged", "6"]


def test_all_damaged_is_an_error_naming_the_directory(tmp_path, capsys):
  d = tmp_path / "ck"
  mngr = _save_steps(d, [6, 12])
  for s in (6, 12):
    (d / str(s) / "data" / "metadata").write_bytes(b"\0" * 8)
  with pytest.raises(ckpt.CheckpointError) as err:
    ckpt.restore_latest_good(mngr, _abstract(_state(0)))
  msg = str(err.value)
  assert "\n" not in msg and f"no usable checkpoint in {d}" in msg and "all 2" in msg, msg
  lines = _fallback_lines(capsys.readouterr().err)
  assert lines[-1].startswith("checkpoint 6 is damaged (data: ") and \
      lines[-1].endswith("): no older checkpoint"), lines
  assert sorted(os.listdir(d)) == ["12", "6"]  # nothing renamed: the next start fails the same


def test_checkpoint_without_fingerprint_restores_unverified(tmp_path, capsys):
  """A workdir written before fingerprints (three items) keeps working."""
  d = tmp_path / "ck"
  opts = ocp.CheckpointManagerOptions(max_to_keep=3, create=True)
  with ocp.CheckpointManager(str(d), options=opts, item_names=("state", "data", "meta")) as old:
    old.save(4, args=ocp.args.Composite(state=ocp.args.StandardSave(_state(4)),
                                        data=ocp.args.JsonSave({"pos": 4}),
                                        meta=ocp.args.JsonSave({"step": 4})))
  mngr = ckpt.manager(str(d), keep_latest=3, keep_best=0)
  assert ckpt.restore_latest_good(mngr, items=("meta",)).meta == {"step": 4}
  r = ckpt.restore_latest_good(mngr, _abstract(_state(0)))
  assert r.step == 4 and not r.verified and r.data == {"pos": 4}
  _assert_tree_equal(r.state, _state(4))
  lines = _fallback_lines(capsys.readouterr().err)
  assert lines == ["checkpoint 4 has no fingerprint (written before integrity checks): "
                   "restored without verification"], lines
  # A new, damaged step on top of it falls back to the old one.
  ckpt.save(mngr, 8, _state(8), {"pos": 8}, {"step": 8}, None)
  ckpt.wait(mngr)
  _zero_middle_of_largest_array_file(d / "8")
  r = ckpt.restore_latest_good(mngr, _abstract(_state(0)))
  assert r.step == 4
  _assert_tree_equal(r.state, _state(4))


def test_other_model_shapes_are_an_error_not_damage(tmp_path):
  d = tmp_path / "ck"
  mngr = _save_steps(d, [6, 12])
  target = _abstract(_state(0))
  target["params"]["w"] = jax.ShapeDtypeStruct((128, 256), jnp.uint32)
  with pytest.raises(ckpt.CheckpointError, match=r"checkpoint 12 in .* does not fit this model "
                                                 r"\(params/w: saved \[256, 256\], expected "
                                                 r"\[128, 256\]\)"):
    ckpt.restore_latest_good(mngr, target)
  assert sorted(os.listdir(d)) == ["12", "6"]


def test_restore_of_one_step_raises_on_damage(tmp_path):
  d = tmp_path / "ck"
  mngr = _save_steps(d, [6])
  (d / "6" / "meta" / "metadata").write_bytes(b"{not json")
  with pytest.raises(ckpt.CheckpointError, match=r"checkpoint 6 in .* is damaged \(meta: "
                                                 r"JSONDecodeError"):
    ckpt.restore(mngr, _abstract(_state(0)))
  assert sorted(os.listdir(d)) == ["6"]


def _fail_json_writes(monkeypatch, when):
  from orbax.checkpoint._src.handlers import json_checkpoint_handler as jch
  real = jch.JsonCheckpointHandler._save_fn

  async def failing(self, x, directory):
    if when(str(directory)):
      raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    return await real(self, x, directory)

  monkeypatch.setattr(jch.JsonCheckpointHandler, "_save_fn", failing)


@pytest.mark.parametrize("surfaces_in", ["wait", "next save"])
def test_failed_write_is_a_clear_error_and_keeps_the_previous(tmp_path, monkeypatch, surfaces_in):
  d = tmp_path / "ck"
  mngr = _save_steps(d, [1], keep_latest=1)  # keep 1: Orbax would delete step 1 after a success
  _fail_json_writes(monkeypatch, lambda p: "/2.orbax-checkpoint-tmp" in p and "meta" in p)
  ckpt.save(mngr, 2, _state(2), {"pos": 2}, {"step": 2}, 0.5)  # async: returns before the error
  with pytest.raises(ckpt.CheckpointError) as err:
    if surfaces_in == "wait":
      ckpt.wait(mngr)
    else:
      ckpt.save(mngr, 3, _state(3), {"pos": 3}, {"step": 3}, 0.3)
  msg = str(err.value)
  assert msg == (f"checkpoint 2 could not be written to {d} (OSError: [Errno 28] No space left "
                 "on device); the latest complete checkpoint is still 1"), msg
  assert mngr.latest_step() == 1
  monkeypatch.undo()
  mngr.close()
  fresh = ckpt.manager(str(d), keep_latest=1, keep_best=0)
  assert fresh.all_steps() == [1]
  r = ckpt.restore_latest_good(fresh, _abstract(_state(0)))
  assert r.step == 1 and r.verified
  _assert_tree_equal(r.state, _state(1))
  assert "2" not in os.listdir(d)  # at most the half-written 2.orbax-checkpoint-tmp, unlisted


def test_failed_synchronous_write(tmp_path, monkeypatch):
  d = tmp_path / "ck"
  mngr = _save_steps(d, [1], async_save=False)
  _fail_json_writes(monkeypatch, lambda p: "/2.orbax-checkpoint-tmp" in p)
  with pytest.raises(ckpt.CheckpointError, match=r"^checkpoint 2 could not be written .*"
                                                 r"\[Errno 28\].*still 1$"):
    ckpt.save(mngr, 2, _state(2), {"pos": 2}, {"step": 2}, 0.5)
  assert mngr.all_steps() == [1]


def test_disk_full_on_a_real_small_filesystem(tmp_path):
  """A 1 MiB tmpfs (needs root and mount; skipped elsewhere): the real ENOSPC from tensorstore."""
  mnt = tmp_path / "small"
  mnt.mkdir()
  if os.geteuid() != 0 or shutil.which("mount") is None:
    pytest.skip("needs root to mount a tmpfs")
  if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mnt)],
                    capture_output=True).returncode != 0:
    pytest.skip("cannot mount a tmpfs here")
  try:
    d = mnt / "ck"
    mngr = ckpt.manager(str(d), keep_latest=1, keep_best=0)
    small = {"w": jnp.asarray(np.random.default_rng(1).integers(0, 2**32, 10_000, np.uint32))}
    big = {"w": jnp.asarray(np.random.default_rng(2).integers(0, 2**32, 400_000, np.uint32))}
    ckpt.save(mngr, 1, small, {}, {"step": 1}, None)
    ckpt.save(mngr, 2, big, {}, {"step": 2}, None)
    with pytest.raises(ckpt.CheckpointError, match=r"^checkpoint 2 could not be written to .* "
                                                   r"\(OSError: \[Errno 28\] No space left on "
                                                   r"device\); the latest complete checkpoint "
                                                   r"is still 1$"):
      ckpt.wait(mngr)
    mngr.close()
    r = ckpt.restore_latest_good(ckpt.manager(str(d), keep_latest=1, keep_best=0),
                                 _abstract(small))
    assert r.step == 1 and r.verified
    np.testing.assert_array_equal(np.asarray(r.state["w"]), np.asarray(small["w"]))
  finally:
    subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


def test_read_only_reader_skips_damage_without_touching_the_directory(tmp_path, capsys):
  """Evaluation/export next to a running training: fall back, rename nothing, delete nothing."""
  d = tmp_path / "ck"
  _save_steps(d, [6, 12])
  _zero_middle_of_largest_array_file(d / "12")
  (d / "18.orbax-checkpoint-tmp").mkdir()  # a save in progress elsewhere
  reader = ckpt.manager(str(d), keep_latest=5, keep_best=1, read_only=True)
  r = ckpt.restore_latest_good(reader, _abstract(_state(0)), items=("state",), quarantine=False)
  assert r.step == 6 and r.meta is None
  _assert_tree_equal(r.state, _state(6))
  assert _fallback_lines(capsys.readouterr().err)[0].endswith("falling back to checkpoint 6")
  reader.close()
  assert sorted(os.listdir(d)) == ["12", "18.orbax-checkpoint-tmp", "6"]
  missing = ckpt.manager(str(tmp_path / "none"), keep_latest=1, keep_best=0, read_only=True)
  assert ckpt.restore_latest_good(missing, _abstract(_state(0))) is None
  assert not (tmp_path / "none").exists()
