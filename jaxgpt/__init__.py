"""jaxgpt: small GPT language models in JAX/Flax, trained fast and swept honestly."""
