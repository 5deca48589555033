"""`quantmcu`: the command line. Each subcommand lives in its own module of this package and
exposes ``register(subparsers)``; errors a user can fix are raised as :class:`UserError` and
printed as one line, exit status 2."""
from __future__ import annotations

import argparse
import importlib
import sys

SUBCOMMANDS = ["models", "eval", "plan", "search", "deploy", "tune", "report"]


class UserError(Exception):
    """An error caused by the command's input; printed as one line, exit status 2."""


def user_errors() -> tuple[type[BaseException], ...]:
    """Exception types that are the user's to fix (bad name, missing file, bad budget)."""
    from ..data import DatasetCorruptError, DatasetMissingError
    from ..frontend import UnsupportedOpError
    from ..models import CheckpointError, UnknownModelError
    from ..quant.policy import PolicyMismatchError
    from ..search import SearchError
    return (UserError, UnknownModelError, CheckpointError, DatasetMissingError,
            DatasetCorruptError, PolicyMismatchError, SearchError, UnsupportedOpError)


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="quantmcu",
        description="Compile PyTorch CNNs for Cortex-M with patch-based inference and "
                    "QuantMCU mixed precision (VDPC + VDQS) on Apache TVM.",
        epilog="Run `quantmcu COMMAND --help` for the options of a command.")
    sub = ap.add_subparsers(dest="command", metavar="COMMAND")
    for name in SUBCOMMANDS:
        try:
            mod = importlib.import_module(f".{name}", __name__)
        except ModuleNotFoundError as e:
            if e.name == f"{__name__}.{name}":
                continue          # subcommand not part of this build
            raise
        mod.register(sub)
    return ap


def main(argv: list[str] | None = None) -> int:
    ap = build_parser()
    args = ap.parse_args(argv)
    if not getattr(args, "func", None):
        ap.print_help()
        return 0
    try:
        return int(args.func(args) or 0)
    except user_errors() as e:
        print(f"quantmcu {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
