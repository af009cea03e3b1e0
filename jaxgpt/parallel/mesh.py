"""Device mesh from config: axes (data, fsdp, tensor, expert), Auto axis types (GSPMD
propagation). `expert` shards an MoE's stacked experts; like `tensor` it replicates the batch.

Every run builds a mesh, a one-device mesh included, so sharding is never a special case.
"""

from __future__ import annotations

import math
from typing import Mapping, Sequence

import jax
from jax.sharding import AxisType, Mesh

from jaxgpt.errors import ConfigError

AXES = ("data", "fsdp", "tensor", "expert")


def resolve_axis_sizes(sizes: Mapping[str, int], num_devices: int) -> dict[str, int]:
  """Fills at most one -1 axis with the remaining devices; errors name mesh.<axis>."""
  sizes = {a: int(sizes.get(a, 1)) for a in AXES}  # an axis left out has size 1
  free = [a for a, s in sizes.items() if s == -1]
  if len(free) > 1:
    raise ConfigError(f"only one mesh axis may be -1, got {', '.join('mesh.' + a for a in free)}")
  fixed = math.prod(s for s in sizes.values() if s != -1)
  if free:
    if num_devices % fixed:
      raise ConfigError(f"mesh axes {sizes} leave no whole number of devices for mesh.{free[0]}"
                       f" ({num_devices} devices, fixed axes use {fixed})")
    sizes[free[0]] = num_devices // fixed
  if math.prod(sizes.values()) != num_devices:
    raise ConfigError(f"mesh {sizes} has {math.prod(sizes.values())} devices but "
                     f"{num_devices} are available; set mesh.data/fsdp/tensor/expert so that the "
                     "product matches (or use -1 for one axis)")
  return sizes


def make_mesh(sizes: Mapping[str, int], devices: Sequence[jax.Device] | None = None) -> Mesh:
  """A mesh over `devices` (default: all) with Auto axis types."""
  devices = list(devices) if devices is not None else jax.devices()
  resolved = resolve_axis_sizes(sizes, len(devices))
  shape = tuple(resolved[a] for a in AXES)
  return jax.make_mesh(shape, AXES, axis_types=(AxisType.Auto,) * len(AXES), devices=devices)


def mesh_shape(mesh: Mesh) -> dict[str, int]:
  return {name: int(size) for name, size in mesh.shape.items()}
