"""The measurements of scripts/gpu_check.py: one section per process.

  python scripts/gpu_sections.py SECTION[,SECTION...] OUT_DIR '{"smoke": false,
                                  "peak_tflops": 989.0, "deadline": <time.time() to stop by>}'

scripts/gpu_check.py starts each section in its own process with its own time limit (on a GPU),
or all of them in one process (`--smoke`), and reads OUT_DIR/<section>.json back.
The sections, their sizes and what each measures: `jaxgpt/bench/gpu_sections.py`.
"""

from __future__ import annotations

import json
import sys

from jaxgpt.bench import gpu_sections


def main(argv: list[str]) -> int:
  names = argv[1].split(",") if len(argv) == 4 else []
  if not names or any(n not in gpu_sections.SECTIONS for n in names):
    print(f"usage: {argv[0]} SECTION[,SECTION...] OUT_DIR PARAMS_JSON; sections: "
          f"{','.join(gpu_sections.SECTIONS)}", file=sys.stderr)
    return 2
  out_dir, params = argv[2], json.loads(argv[3])
  for name in names:
    print(f"[gpu_sections] ---- {name}", flush=True)
    gpu_sections.run_section(name, out_dir, params)
  return 0


if __name__ == "__main__":
  sys.exit(main(sys.argv))
