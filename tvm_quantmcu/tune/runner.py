"""meta_schedule Runner: times built candidates on the board over our RPC link, locally (one QEMU
per worker thread, up to `workers` at once) or on workers found through a TVM RPC tracker.

meta_schedule ranks candidates by seconds: the instruction count (deterministic under QEMU
-icount) is converted at the board's clock, one instruction per cycle. The first kernel of an
artifact is the candidate; its result (instructions, error, worker) is kept in ``results``
for the measure callbacks.
"""
from __future__ import annotations

import json
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

from tvm.ir.utils import derived_object
from tvm.s_tir.meta_schedule.runner import PyRunner, PyRunnerFuture, RunnerResult

from .measure import measure_artifact, pack, read_meta

REMOTE_FUNCTION = "qmcu.tune.measure"


def parse_tracker(addr: str) -> tuple[str, int]:
    host, sep, port = addr.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise ValueError(f"tracker address {addr!r}: expected HOST:PORT, e.g. 127.0.0.1:9190")
    return host, int(port)


@derived_object
class _Future(PyRunnerFuture):
    def __init__(self, fut: Future, clock_hz: float):
        super().__init__()
        self.fut, self.clock_hz = fut, clock_hz

    def done(self) -> bool:
        return self.fut.done()

    def result(self) -> RunnerResult:
        r = self.fut.result()
        if r.get("error") or "instructions" not in r:
            return RunnerResult(None, r.get("error") or "no measurement")
        return RunnerResult([r["instructions"] / self.clock_hz], None)


@derived_object
class BoardRunner(PyRunner):
    def __init__(self, clock_hz: float, workers: int = 1, tracker: str | None = None,
                 key: str | None = None, session_timeout: float = 300.0):
        super().__init__()
        self.clock_hz = clock_hz
        self.tracker = parse_tracker(tracker) if tracker else None
        if self.tracker and not key:
            raise ValueError("a tracker needs the key its workers serve (--key)")
        self.key = key
        self.session_timeout = session_timeout
        self.pool = ThreadPoolExecutor(max(1, workers), thread_name_prefix="qmcu-runner")
        self.results: dict[str, dict] = {}          # artifact dir → result of its candidate
        self._futures: dict[str, Future] = {}
        self._lock = threading.Lock()

    def run(self, runner_inputs):
        return [_Future(self.submit(Path(ri.artifact_path).parent), self.clock_hz)
                for ri in runner_inputs]

    def submit(self, artifact_dir) -> Future:
        """Time the artifact's candidate (once per artifact, however often it is asked)."""
        d = str(artifact_dir)
        with self._lock:
            if d not in self._futures:
                self._futures[d] = self.pool.submit(self._measure, d)
            return self._futures[d]

    def _measure(self, d: str) -> dict:
        meta = read_meta(d)
        if "cached" in meta:          # answered by the database: not a new measurement
            r = {**meta["cached"], "cached": True}
        else:
            try:
                r = (self._remote(d) if self.tracker else measure_artifact(d))[0]
            except Exception as e:  # noqa: BLE001 — a failed trial, never a crash of tuning
                r = {"error": f"runner failed: {type(e).__name__}: {e}"}
            r["measured"] = True      # a board session ran (or was attempted)
        self.results[d] = r
        return r

    def _remote(self, d: str) -> list[dict]:
        from tvm import rpc
        tracker = rpc.connect_tracker(*self.tracker)
        remote = tracker.request(self.key, priority=1, session_timeout=self.session_timeout)
        try:
            fn = remote.get_function(REMOTE_FUNCTION)
            return json.loads(str(fn(pack(d))))
        finally:
            del remote

    def measure_all(self, artifact_dir) -> list[dict]:
        """Every kernel of an artifact (the baseline firmware), on this runner's board."""
        d = str(artifact_dir)
        if self.tracker:
            return self._remote(d)
        return measure_artifact(d)

    def close(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)
