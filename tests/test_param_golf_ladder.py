"""configs/sweeps/param_golf_ladder.py: the ladder is cumulative, each leave-one-out arm differs
from the final configuration in its own knobs only, the horizon arms run 4x, and every point
builds a valid experiment config."""

from configs.sweeps import param_golf_ladder as ladder
from jaxgpt.sweep import runner, space, spec


def _knobs(p):
  return {k: v for k, v in p.items() if k != "label"}


def test_the_ladder_adds_one_step_at_a_time():
  points = ladder.ladder_points()
  assert [p["label"] for p in points] == [label for label, _, _ in ladder.LADDER]
  for (_, adds, _), prev, cur in zip(ladder.LADDER[1:], points, points[1:]):
    assert _knobs(cur) == {**_knobs(prev), **adds}
  published = [bpb for _, _, bpb in ladder.LADDER]
  assert published == sorted(published, reverse=True)  # each step helped, as published
  final = ladder.final_point()
  assert final["schedule"] == "tidal" and final["horizon"] == round(360 * 400 / 276) == 522
  assert (final["encoder"], final["kv"], final["tie"], final["lr"]) == (0, 2, False, 0.11)


def test_leave_one_out_and_horizon_arms():
  final, base = ladder.final_point(), {k: v for k, (_, v) in ladder.KNOBS.items()}
  for p in ladder.loo_points():
    changed = {k for k, v in _knobs(p).items() if final.get(k, base[k]) != v}
    name = p["label"][len("LOO_"):]
    if name == "head_div0.01":
      assert changed == {"head_div"} and p["head_div"] == 0.01
    else:
      to = {**{k: base[k] for k in ladder.LOO[name]}, **ladder.LOO_TO.get(name, {})}
      want = {k for k, v in to.items() if final.get(k, base[k]) != v}
      assert changed == want and all(p[k] == to[k] for k in want), name
  # parameter-golf's token table has one LR tied (0.05) and another untied (0.6 by default):
  # untying alone goes back to the tied table at its LR, the embedding LR to the untied default
  loo = {p["label"]: p for p in ladder.loo_points()}
  assert (loo["LOO_untied"]["tie"], loo["LOO_untied"]["embed_lr"]) == (True, 0.05)
  assert (loo["LOO_embed_lr"]["tie"], loo["LOO_embed_lr"]["embed_lr"]) == (False, 0.6)
  horizon = ladder.horizon_points()
  assert len(horizon) == 2 + len(ladder.SHAPE_DEPENDENT)
  for p in horizon:
    assert p["steps"] == 4 * 360 and p["horizon"] in (4 * 360, 4 * 522)


def test_every_point_builds_a_valid_config():
  for variants in ("", "test", "loo_embed"):
    s = spec.load_sweep("configs/sweeps/param_golf_ladder.py" + (f":{variants}" if variants
                                                                   else ""))
    base = spec.load_experiment(s)
    runner.check_space(s, base)
    points, table = space.group_points(s.groups.to_dict(), runner.stage1_dims(s))
    assert s.objective == "val_bpb" and len(s.seeds) >= 2
    if not variants:
      assert len(points) == 29 and {g: len(v) for g, v in table.items()} == {
          "ladder": 11, "loo": 12, "horizon": 6}
    if variants == "loo_embed":
      assert [p["label"] for p in s.groups.loo_embed] == [
          "L10_decoder_final", "LOO_untied", "LOO_embed_lr"]
    configs, _ = runner._stage1_configs(s, base, runner.stage1_dims(s), ())
    assert all(c.train.max_time_s is None for c in configs)  # step budgets, no time cap
