"""Titans: neural long-term memory with test-time updates (`memory.py`), MAC and MAG models
(`model.py`, `model.name = titans`), their attention masks (`attention.py`); docs/titans.md."""

from jaxgpt.models.titans import model  # noqa: F401 - importing registers the family
