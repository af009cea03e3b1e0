"""`python -m jaxgpt.data.prepare`: a corpus (parquet, jsonl, text files or a Hugging Face
dataset) -> token shards with a boundary token before every document, a hashed validation
split and meta.json; resumable. See `prepare_corpus.py` for the flags and the layout.

Run it; do not import it (importing the module `jaxgpt.data.prepare` would shadow the function
`jaxgpt.data.prepare` on the package): its code is in `prepare_corpus.py`.
"""

import sys

from jaxgpt.data import prepare_corpus

if __name__ == "__main__":
  sys.exit(prepare_corpus.main())
