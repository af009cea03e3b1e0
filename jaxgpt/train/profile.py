"""The profiler window (`train.profile_steps = (start, stop)`): a `jax.profiler` trace of the
steps that take a run from `start` to `stop` steps done (metrics.jsonl rows start+1 .. stop).

The trace starts just before the step that begins with `start` steps done and stops after the
step that ends with `stop` done, once that step's outputs are ready, so it holds the steps' device
work and not only their dispatch. It is written to `<workdir>/profile/plugins/profile/<time>/`
(`*.xplane.pb` for TensorBoard's profile plugin and XProf, `*.trace.json.gz` for Perfetto).
Starting and stopping the trace (which writes the files) is kept out of the training clock; the
traced steps themselves run a little slower. A run resumed inside the window traces the rest of
it; one resumed past it traces nothing; a run that stops inside it (time cap, target, interrupt)
closes the trace at its end.
"""

from __future__ import annotations

import os

import jax

PROFILE_DIR = "profile"


class Window:
  """Starts and stops one `jax.profiler` trace around the steps [start, stop) (0-based)."""

  def __init__(self, start: int, stop: int, logdir: str):
    self.start_step, self.stop_step, self.logdir = int(start), int(stop), logdir
    self.active = False
    self.done = False

  @classmethod
  def from_config(cls, tcfg, workdir: str) -> "Window | None":
    """The window of `train.profile_steps` (validated by `config.validate`), or None."""
    steps = tcfg.get("profile_steps")
    if steps is None:
      return None
    return cls(steps[0], steps[1], os.path.join(workdir, PROFILE_DIR))

  def starts_before(self, steps_done: int) -> bool:
    """Whether the trace starts before the step that begins with `steps_done` steps done: the
    first step of the window this process runs (a resumed run may begin inside it)."""
    return not (self.active or self.done) and self.start_step <= steps_done < self.stop_step

  def start(self) -> None:
    os.makedirs(self.logdir, exist_ok=True)
    jax.profiler.start_trace(self.logdir)
    self.active = True

  def stops_after(self, steps_done: int) -> bool:
    """Whether the trace stops after the step that ends with `steps_done` steps done (the
    caller first waits for that step's outputs, so the trace holds its device work)."""
    return self.active and steps_done >= self.stop_step

  def close(self) -> None:
    """Stops the trace (also one still running when a run ends inside the window)."""
    if self.active:
      jax.profiler.stop_trace()
      self.active, self.done = False, True


def trace_files(workdir: str) -> list[str]:
  """The trace files a run wrote under `<workdir>/profile` (xplane.pb and trace.json.gz)."""
  out = []
  for root, _, names in os.walk(os.path.join(workdir, PROFILE_DIR)):
    out += [os.path.join(root, n) for n in names if n.endswith((".xplane.pb", ".trace.json.gz"))]
  return sorted(out)


__all__ = ["PROFILE_DIR", "Window", "trace_files"]
