"""The nested depth grid against the controller's starting multiplier: does depth matter?

    python scripts/nested_grid_plot.py runs/nested_grid_moe --out docs/nested_grid_moe

Fits the final validation loss of every finished trial of a `configs/sweeps/nested_grid.py`
workdir as a quadratic in log(first logged core multiplier), tests by one-way ANOVA whether the
cell (M, C), M or C explains what is left (also on the trials whose multiplier started at or
above --min_mult), prints one row per trial and writes OUT.json and OUT.png. The analysis:
`jaxgpt/bench/nested_grid.py`.
"""

import argparse
import os
import sys

from jaxgpt.bench import nested_grid


def main(argv=None) -> int:
  ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  ap.add_argument("workdir")
  ap.add_argument("--out", help="OUT.json and OUT.png (default: WORKDIR/nested_grid_mult)")
  ap.add_argument("--title", default=None)
  ap.add_argument("--min_mult", type=float, default=1.0,
                  help="also analyse the trials whose first multiplier is >= this (default 1.0)")
  args = ap.parse_args(argv)
  rows = nested_grid.load_rows(args.workdir)
  if len(rows) < 4:
    print(f"error: {args.workdir} has {len(rows)} finished trials with a logged "
          f"{nested_grid.MULT_KEY}; need at least 4", file=sys.stderr)
    return 2
  out = args.out or os.path.join(args.workdir, "nested_grid_mult")
  nested_grid.report(args.workdir, rows, args.min_mult, out, args.title)
  return 0


if __name__ == "__main__":
  sys.exit(main())
