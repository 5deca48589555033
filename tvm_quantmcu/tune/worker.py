"""Serve this machine's QEMU boards to a TVM RPC tracker for `quantmcu tune --tracker`.

    python -m tvm.exec.rpc_tracker --host 0.0.0.0 --port 9190
    python -m tvm_quantmcu.tune.worker --tracker HOST:9190 --key qemu-m4     # on each machine
    quantmcu tune --model mbv2-fmnist --tracker HOST:9190 --key qemu-m4

The worker is a ``tvm.rpc.Server`` registered with the tracker under the key; every session it
serves runs in a fresh process that has the remote function ``qmcu.tune.measure``: it takes a
packed timing artifact (measure.pack), boots it on QEMU through the project API, and returns
the per-kernel results as JSON, tagged with the worker's name. One server serves one session
at a time, so a worker runs one QEMU at a time: start one worker per core.

TVM's RPC server runs whatever a client sends: use it on a trusted network only.
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import sys
import tempfile
import threading

from .measure import ENV_WORKER, measure_artifact, unpack
from .runner import REMOTE_FUNCTION, parse_tracker


def register_remote_functions() -> None:
    """Runs in the server process before it serves: the board runner as a remote function."""
    import tvm_ffi

    def measure(blob) -> str:
        with tempfile.TemporaryDirectory(prefix="qmcu-worker-") as d:
            try:
                return json.dumps(measure_artifact(unpack(bytes(blob), d)))
            except Exception as e:  # noqa: BLE001 — returned to the tuner as a failed trial
                return json.dumps([{"error": f"worker {os.environ.get(ENV_WORKER)}: "
                                             f"{type(e).__name__}: {e}"}])
    tvm_ffi.register_global_func(REMOTE_FUNCTION, measure, override=True)


def serve(tracker: str, key: str, host: str = "127.0.0.1", port: int = 9300,
          port_end: int = 9400, name: str | None = None):
    """Start the RPC server registered with `tracker`; returns it (terminate() stops it)."""
    from tvm import rpc
    os.environ[ENV_WORKER] = name or f"{socket.gethostname()}:{os.getpid()}"
    return rpc.Server(host=host, port=port, port_end=port_end,
                      tracker_addr=parse_tracker(tracker), key=key,
                      server_init_callback=register_remote_functions, silent=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m tvm_quantmcu.tune.worker",
        description="Serve QEMU boards for kernel tuning to a TVM RPC tracker.")
    ap.add_argument("--tracker", required=True, metavar="HOST:PORT")
    ap.add_argument("--key", required=True, help="device key the tuner requests, e.g. qemu-m4")
    ap.add_argument("--host", default="127.0.0.1",
                    help="address this worker listens on (reachable by the tuner)")
    ap.add_argument("--port", type=int, default=9300, help="first port to try")
    ap.add_argument("--port-end", type=int, default=9400)
    ap.add_argument("--name", default=None, help="name reported with each measurement")
    args = ap.parse_args(argv)
    from micro_project import qemu
    if not qemu.have_toolchain():
        print("worker: qemu-system-arm / arm-none-eabi-gcc not found (apt-get install "
              "--no-install-recommends qemu-system-arm gcc-arm-none-eabi)", file=sys.stderr)
        return 2
    try:
        server = serve(args.tracker, args.key, args.host, args.port, args.port_end, args.name)
    except ValueError as e:
        print(f"worker: {e}", file=sys.stderr)
        return 2
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    print(f"worker {os.environ[ENV_WORKER]} serving key {args.key!r} on "
          f"{args.host}:{server.port} via tracker {args.tracker}", flush=True)
    while not stop.wait(1.0):
        pass
    server.terminate()
    return 0


if __name__ == "__main__":
    sys.exit(main())
