"""`quantmcu`: the command line. Each subcommand lives in its own module of this package and
exposes ``register(subparsers)``; errors a user can fix are raised as :class:`UserError` and
printed as one line, exit status 2."""
from __future__ import annotations

import argparse
import importlib
import os
import signal
import sys
import warnings

SUBCOMMANDS = ["models", "eval", "plan", "search", "deploy", "tune", "report"]


class UserError(Exception):
    """An error caused by the command's input; printed as one line, exit status 2."""


def user_errors() -> tuple[type[BaseException], ...]:
    """Exception types that are the user's to fix (bad name, missing file, bad budget, a board
    that hangs or a link that fails)."""
    from micro_project import ProjectError
    from micro_project.client import RpcError
    from micro_project.transport import TransportError

    from ..data import DataShapeError, DatasetCorruptError, DatasetMissingError
    from ..frontend import UnsupportedOpError
    from ..models import CheckpointError, ModelSpecError, UnknownModelError
    from ..quant.policy import PolicyMismatchError
    from ..search import SearchError
    from ..userdata import DataError
    return (UserError, UnknownModelError, CheckpointError, DatasetMissingError,
            DatasetCorruptError, PolicyMismatchError, SearchError, UnsupportedOpError,
            ProjectError, RpcError, TransportError, ModelSpecError, DataError, DataShapeError)


def _one_line(e: BaseException, limit: int = 400) -> str:
    """An error message as one line (a tool's multi-line output is joined with " | ")."""
    text = " | ".join(line.strip() for line in str(e).splitlines() if line.strip())
    if isinstance(e, OSError) and e.filename and str(e.filename) not in text:
        text = f"{e.filename}: {e.strerror or text}"
    return text if len(text) <= limit else text[:limit - 1] + "…"


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


class Interrupted(KeyboardInterrupt):
    """SIGINT, SIGTERM or SIGHUP arrived."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum


def _on_signal(signum, frame) -> None:
    # emulators first: worker threads may hold them, and they must not outlive the command
    from micro_project.transport import kill_all_processes
    kill_all_processes()
    raise Interrupted(signum)


def _install_signal_handlers() -> dict:
    old = {}
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        try:
            old[sig] = signal.signal(sig, _on_signal)
        except ValueError:          # not the main thread: leave the handlers alone
            break
    return old


def _exit_now(rc: int) -> None:
    """End the program at once: the interpreter's teardown of TVM and torch takes seconds,
    which would delay the exit status (and a supervisor's next step) for nothing."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(rc)


def main(argv: list[str] | None = None) -> int:
    """The command line. Run as the program (no `argv`), it exits the process itself."""
    if argv is None:
        _exit_now(_main(None))
    return _main(argv)


def _main(argv: list[str] | None) -> int:
    ap = build_parser()
    args = ap.parse_args(argv)
    if not getattr(args, "func", None):
        ap.print_help()
        return 0
    old = _install_signal_handlers()
    # a deprecation inside torch.export, not the user's to act on
    warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\)",
                            category=FutureWarning)
    try:
        return int(args.func(args) or 0)
    except user_errors() as e:
        print(f"quantmcu {args.command}: error: {_one_line(e)}", file=sys.stderr)
        return 2
    except OSError as e:              # a file or directory that cannot be read or written
        print(f"quantmcu {args.command}: error: {_one_line(e)}; check the path and its "
              "permissions", file=sys.stderr)
        return 2
    except KeyboardInterrupt as e:
        signum = getattr(e, "signum", signal.SIGINT)
        print(f"quantmcu {args.command}: interrupted by {signal.Signals(signum).name}; "
              "nothing was written to --out", file=sys.stderr)
        return 128 + signum
    except Exception as e:  # noqa: BLE001 — never a traceback; one line says what broke
        if os.environ.get("QUANTMCU_TRACEBACK"):
            raise
        print(f"quantmcu {args.command}: internal error: {type(e).__name__}: {_one_line(e)} "
              "(QUANTMCU_TRACEBACK=1 shows where; please report it)", file=sys.stderr)
        return 1
    finally:
        for sig, handler in old.items():
            signal.signal(sig, handler)


if __name__ == "__main__":
    sys.exit(main())
