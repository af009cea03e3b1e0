"""The Shakespeare cut into scenes (jaxgpt.data.scenes) and the document-boundary study's sweep
config."""

import numpy as np

from jaxgpt.data import pipeline, scenes, shakespeare
from jaxgpt.sweep import runner, space, spec

PLAY = ("THE TRAGEDY\n\nPersons of the play\n\nSCENE: Rome; and near Philippi.\n\n"
        "ACT I. SCENE 1. A street.\n\nEnter FLAVIUS.\n\nSCENE II. A public place.\n"
        "  Scene III. The same.\nA line that says SCENE IV. in its middle.\n"
        "SCENE. Elsinore.\nSCENE 12. Last.\n")


def test_cut_scenes_at_headings_only():
  pieces = scenes.cut_scenes(PLAY)
  assert "".join(pieces) == PLAY
  assert [p.splitlines()[0] for p in pieces] == [
      "THE TRAGEDY", "ACT I. SCENE 1. A street.", "SCENE II. A public place.",
      "  Scene III. The same.", "SCENE 12. Last."]
  assert scenes.cut_scenes("SCENE I. At once.\nText\n") == ["SCENE I. At once.\nText\n"]
  assert scenes.cut_scenes("A sonnet\nwithout scenes\n") == ["A sonnet\nwithout scenes\n"]


def test_the_corpus_cuts_into_many_short_documents(tmp_path):
  docs = scenes.scene_documents()
  assert len(docs["train"]) > 600 and len(docs["val"]) > 70
  # Each work's scenes concatenate back to the work; names are unique and in corpus order.
  root = shakespeare.cache.data_dir() / shakespeare.PACKAGE
  works = shakespeare.work_documents(root)
  for split in ("train", "val"):
    names = [n for n, _ in docs[split]]
    assert len(set(names)) == len(names) and names == sorted(names)
    assert "".join(t for _, t in docs[split]) == "".join(works[split])
  counts = scenes.write_scenes(tmp_path / "s")
  assert counts == {k: len(v) for k, v in docs.items()}
  assert len(list((tmp_path / "s" / "val").glob("*.txt"))) == counts["val"]


def test_boundary_shares_against_a_loop():
  rng = np.random.default_rng(0)
  tokens = rng.integers(1, 50, size=2000)
  bos = np.sort(rng.choice(2000, size=60, replace=False))
  tokens[bos] = 0
  tokens[0] = 0
  seq_len = 16
  got = scenes.boundary_shares(tokens, 0, seq_len)
  want = np.mean([np.any(tokens[s + 1:s + seq_len + 1] == 0) for s in range(2000 - seq_len)])
  assert got["stride"] == want
  starts = pipeline.aligned_starts(np.flatnonzero(tokens == 0), 2000, seq_len)
  assert got["aligned"] == np.mean([np.any(tokens[s + 1:s + seq_len + 1] == 0) for s in starts])
  assert got["aligned_dropped"] == 1 - len(starts) * seq_len / 2000


def test_the_study_config_has_five_arms_from_the_newline_baseline():
  s = spec.load_sweep("configs/sweeps/doc_boundaries.py")
  assert s.objective == "val_bpb" and list(s.seeds) == [0, 1, 2]
  points, table = space.group_points(s.groups.to_dict(), runner.stage1_dims(s))
  assert len(points) == 5 and table["boundaries"][0]["label"] == "newline"
  assert points[0] == {"separator": "newline", "mask": False, "align": False}
  assert s.base.overrides.data.train_pattern.endswith("/train/*.txt")
