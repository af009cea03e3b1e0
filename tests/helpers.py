"""Shared test helpers: load a config file by name with variants and overrides."""

import importlib.util
import pathlib

ROOT = pathlib.Path(__file__).resolve().parents[1]


def load_config(name: str, variants: str = "", **overrides):
  """configs/<name>.py:get_config(variants), then dotted overrides like train__steps=3."""
  spec = importlib.util.spec_from_file_location(f"cfg_{name}", ROOT / "configs" / f"{name}.py")
  mod = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(mod)
  c = mod.get_config(variants)
  for key, value in overrides.items():
    section, field = key.split("__")
    c[section][field] = value
  return c
