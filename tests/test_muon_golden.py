"""Muon's chain of small transforms is bitwise the single transform it replaced (CPU).

The hashes in tests/data/ were written by `tests/muon_golden.py` from the single-transform Muon
(commit 3e57b3c): every update and every optimizer-state leaf, keyed by path, across momentum
style, Nesterov, bias correction, orthogonalizer, variance reduction (none / NorMuon / MARS),
cautious update and weight decay, update scale, momentum warm-up, bf16 momentum and iteration,
traced hyperparameters (inject_hyperparams, vmapped cohorts), the partitioned Muon + AdamW chain
and a sharded 2 x 2 mesh under each matrix_sharding. Equal paths mean the state tree is the one
checkpoints written before the refactor hold.
"""

import json
import pathlib
import subprocess
import sys

import pytest

from tests import muon_golden

DATA = pathlib.Path(__file__).parent / "data"


def _mismatches(got: dict, want: dict) -> list[str]:
  out = []
  for run in sorted(set(got) | set(want)):
    g, w = got.get(run, {}), want.get(run, {})
    if set(g) != set(w):
      out.append(f"{run}: leaves differ: only now {sorted(set(g) - set(w))[:4]}, "
                 f"only before {sorted(set(w) - set(g))[:4]}")
    out += [f"{run}: {leaf}" for leaf in sorted(set(g) & set(w)) if g[leaf] != w[leaf]]
  return out


def test_generator_detects_a_change():
  """The yardstick can fail: a different learning rate changes the hashes."""
  from jaxgpt.optim.muon import muon
  base = muon_golden._run(muon(0.02, dimension_numbers=muon_golden._dims()),
                          muon_golden._params(), muon_golden._grads)
  other = muon_golden._run(muon(0.0200001, dimension_numbers=muon_golden._dims()),
                           muon_golden._params(), muon_golden._grads)
  assert _mismatches({"x": base}, {"x": other})


def test_bitwise_equal_to_single_transform():
  want = json.loads((DATA / "muon_golden.json").read_text())
  got = muon_golden.generate(sharded=False)
  assert set(got) == set(want)
  bad = _mismatches(got, want)
  assert not bad, "\n".join(bad[:20])


@pytest.mark.multidevice
def test_bitwise_equal_sharded():
  want = json.loads((DATA / "muon_golden_sharded.json").read_text())
  proc = subprocess.run([sys.executable, str(pathlib.Path(muon_golden.__file__)), "--sharded"],
                        capture_output=True, text=True, timeout=600)
  assert proc.returncode == 0, proc.stderr[-3000:]
  bad = _mismatches(json.loads(proc.stdout), want)
  assert not bad, "\n".join(bad[:20])
