"""Loads an exported folder with transformers and compares its logits with jaxgpt's.

Run with a Python that has torch and transformers (jaxgpt itself is not imported):

    python scripts/hf_compare.py DIR

DIR is a `--config.export.format=hf` folder holding input_ids.npy (int [B, T]) and
logits.npy (jaxgpt's float32 logits on them), as tests/test_hf_interop.py's live test writes
it. Prints one JSON line: the architecture transformers built, max |logits diff|, whether the
folder's tokenizer (AutoTokenizer) encodes a probe text to its UTF-8 bytes (jaxgpt's byte
tokenizer), and the torch / transformers versions. Exit 1 when the logits differ by more than
--atol.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import numpy as np
import torch
import transformers

PROBE = "The caf\u00e9 \u2014 \u65e5\u672c \U0001f642\n\ttabs  and spaces"


def main() -> int:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("folder")
  parser.add_argument("--atol", type=float, default=1e-4)
  args = parser.parse_args()
  model = transformers.AutoModelForCausalLM.from_pretrained(
      args.folder, dtype=torch.float32, attn_implementation="eager").eval()
  ids = np.load(os.path.join(args.folder, "input_ids.npy"))
  want = np.load(os.path.join(args.folder, "logits.npy"))
  with torch.no_grad():
    got = model(torch.as_tensor(ids, dtype=torch.long)).logits.float().numpy()
  diff = float(np.abs(got[..., :want.shape[-1]] - want).max())
  tokenizer_ok = None
  if os.path.exists(os.path.join(args.folder, "tokenizer.json")):
    tok = transformers.AutoTokenizer.from_pretrained(args.folder)
    tokenizer_ok = tok.encode(PROBE, add_special_tokens=False) == list(PROBE.encode("utf-8"))
  print(json.dumps({"architecture": type(model).__name__, "max_abs_diff": diff,
                    "tokenizer_ids_are_bytes": tokenizer_ok, "torch": torch.__version__,
                    "transformers": transformers.__version__}))
  return 0 if diff <= args.atol and got.shape == want.shape else 1


if __name__ == "__main__":
  sys.exit(main())
