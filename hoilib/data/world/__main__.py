"""Command line of the built-in HOI world: `python -m hoilib.data.world --bench` prints the generation speed on one
core; `--preview out.png` renders an annotated grid of training images; `--version 1` selects the first world
(with its own defaults, VERSION_1)."""
from __future__ import annotations

import argparse
import json

from ...config import WorldConfig
from ...plotting import show_hoi_grid
from .generate import VERSION_1, _annotations, bench, generate_split
from .vocabulary import world_vocabulary


def _main(argv=None) -> None:
    ap = argparse.ArgumentParser(prog="python -m hoilib.data.world", description=__doc__.split("\n")[0])
    ap.add_argument("--bench", action="store_true", help="print images/s generated on one core")
    ap.add_argument("--n", type=int, default=2000, help="images for --bench / --preview")
    ap.add_argument("--size", type=int, default=64, help="image size for --bench")
    ap.add_argument("--preview", default="", help="write an annotated grid of training images to this PNG")
    ap.add_argument("--version", type=int, choices=(1, 2), default=WorldConfig.version, help="world version")
    args = ap.parse_args(argv)
    if args.bench:
        print(json.dumps(bench(args.n, args.size, version=args.version)))
    if args.preview:
        wc = WorldConfig(**(VERSION_1 if args.version == 1 else {}))
        n = min(args.n, 24)
        images, meta = generate_split(wc, "train", n)
        ann = _annotations(meta, "train", wc.image_size, world_vocabulary())
        show_hoi_grid(images, ann, world_vocabulary(), range(n), ncols=6).savefig(args.preview, dpi=120)
        print(f"wrote {args.preview}")
    if not (args.bench or args.preview):
        ap.print_help()


if __name__ == "__main__":
    _main()
