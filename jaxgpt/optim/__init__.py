"""Optimizers as optax transforms: schedules on the training clock, AdamW, the Muon family."""

from jaxgpt.optim.adamw import weight_decay_mask
from jaxgpt.optim.build import build_optimizer, learning_rate

__all__ = ["build_optimizer", "learning_rate", "weight_decay_mask"]
