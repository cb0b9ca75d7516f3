"""The ``asl-edge`` command line: lists the commands, each registered by the module beside the
stage it drives (``add_parser`` and its body), and turns a ``UserError`` into one line and exit
code 2."""

from __future__ import annotations

import argparse
import sys
import textwrap
from typing import List, Optional

import asl_edge

from .errors import UserError

# `asl-edge --help` lists the commands by the stage they drive (docs/commands.md follows it)
COMMAND_GROUPS = (
    ("getting started", ("demo", "doctor", "build-ext", "weights")),
    ("training and evaluation", ("synth", "train", "eval", "eval-detections", "plot-detections",
                                 "import-checkpoint")),
    ("deployment", ("export", "infer", "bench")),
    ("video and streaming", ("extract-features", "stream", "eval-stream")),
)


def build_parser() -> argparse.ArgumentParser:
    """The ``asl-edge`` parser: one subcommand per command, listed by stage in ``--help``."""
    from . import demo, doctor, infer
    from .bench import command as bench_command
    from .export import command as export_command
    from .features import commands as feature_commands
    from .features import extract
    from .model import command as model_command
    from .stream import command as stream_command
    from .stream import evaluation as stream_evaluation
    from .train import commands as train_commands

    parser = argparse.ArgumentParser(prog="asl-edge", usage="%(prog)s [-h] [--version] COMMAND ...",
                                     description=asl_edge.__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"asl-edge {asl_edge.__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", help=argparse.SUPPRESS,
                                prog="asl-edge")
    for register in (demo.add_parser, doctor.add_parsers, feature_commands.add_parser, train_commands.add_parsers,
                     model_command.add_parser, export_command.add_parser, infer.add_parser, bench_command.add_parser,
                     extract.add_parser, stream_command.add_parser, stream_evaluation.add_parser):
        register(sub)
    parser.epilog = grouped_commands(sub) + "\n'asl-edge COMMAND --help' describes a command's options."
    return parser


def grouped_commands(sub) -> str:
    """The commands by stage, each with its one-line help, for ``asl-edge --help``."""
    helps = {action.dest: action.help for action in sub._choices_actions}
    missing = sorted(set(helps) - {name for _, names in COMMAND_GROUPS for name in names})
    if missing:
        raise AssertionError(f"commands in no group of COMMAND_GROUPS: {missing}")
    lines = []
    for title, names in COMMAND_GROUPS:
        lines.append(f"{title}:")
        for name in names:
            wrapped = textwrap.wrap(helps[name], width=100, initial_indent=f"  {name:<19}",
                                    subsequent_indent=" " * 21)
            lines += wrapped
        lines.append("")
    return "\n".join(lines)


def main(argv: Optional[List[str]] = None) -> int:
    from .compute import configure_threads

    args = build_parser().parse_args(argv)
    configure_threads()
    try:
        return args.func(args)
    except UserError as err:
        print(f"asl-edge {args.command}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"asl-edge {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
