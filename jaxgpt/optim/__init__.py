"""Optimizers as optax transforms: schedules on the training clock, AdamW, the Muon family."""

from jaxgpt.optim import nested  # noqa: F401 - registers optimizer.name="deep_nested"
from jaxgpt.optim.adamw import weight_decay_mask
from jaxgpt.optim.build import build_optimizer, learning_rate
from jaxgpt.optim.logged import state_metrics

__all__ = ["build_optimizer", "learning_rate", "state_metrics", "weight_decay_mask"]
