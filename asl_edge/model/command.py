"""``asl-edge import-checkpoint``: another implementation's checkpoint (ActionFormer's) as an
asl-edge checkpoint."""

from __future__ import annotations

import sys

from ..errors import CommandError


def add_parser(sub) -> None:
    p = sub.add_parser("import-checkpoint", help="convert another implementation's checkpoint to asl-edge's format")
    p.add_argument("--from", dest="source", choices=["actionformer"], required=True)
    p.add_argument("--config", required=True, help="the config the checkpoint was trained with (preset or YAML)")
    p.add_argument("--no-ema", action="store_true", help="import 'state_dict' instead of the EMA weights")
    p.add_argument("input", help="ActionFormer .pth.tar")
    p.add_argument("output", help="asl-edge checkpoint to write (.pt); not the input file")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..config import ConfigError, load_config
    from . import CheckpointError, from_actionformer_checkpoint, save_checkpoint
    from ..outputs import check_output_file

    try:
        check_output_file(args.output, inputs=[args.input])
        ckpt = from_actionformer_checkpoint(args.input, load_config(args.config), use_ema=not args.no_ema)
        save_checkpoint(ckpt.model, ckpt.config, args.output, meta=ckpt.meta)
    except (ConfigError, CheckpointError, OSError) as err:
        raise CommandError(str(err)) from err
    print(f"imported {args.input} [{ckpt.meta['weights']}] -> {args.output} "
          f"({sum(p.numel() for p in ckpt.model.parameters()):,} parameters)", file=sys.stderr)
    return 0
