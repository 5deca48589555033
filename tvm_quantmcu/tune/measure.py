"""Time built timing firmware on its board: boot it through the project API, run kernels over
the RPC link, check their output, count instructions.

An artifact is a directory holding ``measure.json`` (what to run and expect) and ``project/``
(a built micro_project project). It is self-contained, so a remote worker can run it from a
tarball (:func:`pack` / :func:`unpack`). Every failure — a device that faults, hangs, answers
wrongly, or computes another output than the default kernel — comes back as an error string,
never as an exception: a failed trial must not stop tuning.
"""
from __future__ import annotations

import io
import json
import os
import socket
import tarfile
from pathlib import Path

META = "measure.json"
ENV_WORKER = "QMCU_TUNE_WORKER"
# Files of a built qemu project that running it needs (not its sources).
_RUN_FILES = ("project.json", "build/firmware.elf")


def worker_name() -> str:
    return os.environ.get(ENV_WORKER) or f"local:{socket.gethostname()}"


def write_meta(artifact_dir, meta: dict) -> Path:
    p = Path(artifact_dir) / META
    p.write_text(json.dumps(meta, indent=1) + "\n")
    return p


def read_meta(artifact_dir) -> dict:
    return json.loads((Path(artifact_dir) / META).read_text())


def measure_artifact(artifact_dir, run_timeout: float | None = None) -> list[dict]:
    """Run every kernel of the artifact; per kernel {"instructions"} or {"error"}, plus the
    worker's name; "device_lost" marks a board that failed (crashed, hung, did not boot).
    `run_timeout`: seconds without an answer until the board is declared hung (default: the
    artifact's)."""
    import micro_project
    from micro_project.client import RpcError
    from micro_project.transport import TransportError

    d = Path(artifact_dir)
    meta = read_meta(d)
    kernels = meta["kernels"]
    name = worker_name()
    from ..deploy import link_options
    hang = run_timeout or meta.get("run_timeout", 10.0)     # seconds until declared hung
    results: list[dict] = []
    try:
        project = micro_project.open_project(d / "project")
        flash = {"time_limit": int(meta.get("time_limit", 120))}
        with project.session(expected_hash=meta["hash"], flash_options=flash,
                             **link_options(hang)) as client:
            for i, k in enumerate(kernels):
                results.append(_run_one(client, project, i, k))
                if results[-1].get("device_lost"):     # the rest cannot run
                    err = results[-1]["error"]
                    results += [{"error": f"not run: an earlier kernel failed ({err})"}
                                for _ in kernels[i + 1:]]
                    break
    except (RpcError, TransportError, OSError, RuntimeError) as e:
        msg = f"{type(e).__name__}: {e}"
        done = len(results)
        results += [{"error": f"device session failed: {msg}", "device_lost": True}
                    for _ in kernels[done:]]
    for r in results:
        r["worker"] = name
    return results


def _run_one(client, project, kernel_id: int, k: dict) -> dict:
    from micro_project.client import DeviceError, RpcError
    from micro_project.transport import TransportError
    try:
        timing = client.run_kernel(kernel_id, 1)
        out = client.read_output(k["output_bytes"]) if k.get("expected") else b""
    except DeviceError as e:
        return {"error": f"device refused the run: {e}"}
    except (RpcError, TransportError) as e:
        return {"error": f"device crashed or hung running kernel {k['name']}: "
                         f"{type(e).__name__}: {e}", "device_lost": True}
    instr = project.instructions(timing.ticks_per_run)
    if k.get("expected") is not None:
        want = bytes.fromhex(k["expected"])
        if out != want:
            bad = sum(a != b for a, b in zip(out, want))
            return {"error": f"kernel {k['name']} output differs from the default kernel's in "
                             f"{bad} of {len(want)} bytes", "instructions": instr}
    return {"instructions": instr}


# ---- shipping an artifact to a remote worker

def pack(artifact_dir) -> bytes:
    """The files a worker needs to run the artifact, as a gzip'd tarball."""
    d = Path(artifact_dir)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        tar.add(d / META, arcname=META)
        for rel in _RUN_FILES:
            tar.add(d / "project" / rel, arcname=f"project/{rel}")
    return buf.getvalue()


def unpack(blob: bytes, directory) -> Path:
    d = Path(directory)
    with tarfile.open(fileobj=io.BytesIO(bytes(blob)), mode="r:gz") as tar:
        for m in tar.getmembers():
            # only the files pack() writes: no absolute paths, links or parent references
            if not (m.isfile() or m.isdir()) or m.name.startswith("/") or ".." in m.name:
                raise ValueError(f"refusing tar member {m.name!r}")
        tar.extractall(d, filter="data")
    return d
