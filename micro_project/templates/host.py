"""`host` template: the firmware core built natively with gcc; the link is the process's
stdin/stdout. For fast tests of the whole RPC path, and sanitizer builds."""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from ..project_api import (FIRMWARE_DIR, MAX_PAYLOAD_OPTION, ProjectAPIHandler, ProjectError,
                           ProjectOption, ToolMissingError)
from ..transport import ProcessTransport, Transport, TransportTimeouts

SANITIZE_FLAGS = ("-fsanitize=address,undefined", "-fno-sanitize-recover=all",
                  "-fno-omit-frame-pointer")


class HostProject(ProjectAPIHandler):
    platform_name = "host"
    options = (
        MAX_PAYLOAD_OPTION,
        ProjectOption("cc", "C compiler", "str", "gcc", optional=("build",)),
        ProjectOption("opt", "optimisation flag", "str", "-O2", optional=("build",)),
        ProjectOption("sanitize", "build with AddressSanitizer + UBSan", "bool", False,
                      optional=("build",)),
        ProjectOption("verbose", "print the compiler command", "bool", False,
                      optional=("build",)),
    )

    def _generate(self, project_dir: Path, options: dict) -> None:
        hal = project_dir / "hal"
        hal.mkdir()
        shutil.copy(FIRMWARE_DIR / "hal" / "host" / "qmcu_hal_host.c", hal)

    @property
    def binary(self) -> Path:
        return self._need_project() / "build" / "firmware"

    def build(self, options: dict | None = None) -> Path:
        o = self.resolve_options("build", options)
        d = self._need_project()
        if shutil.which(o["cc"]) is None:
            raise ToolMissingError(f"host template: C compiler {o['cc']!r} not found "
                                   "(apt-get install gcc)")
        (d / "build").mkdir(exist_ok=True)
        max_payload = self.project["options"].get("max_payload", 512)
        cmd = [o["cc"], "-std=c11", o["opt"], "-g", "-Wall", "-Wextra",
               f"-DQMCU_MAX_PAYLOAD={max_payload}u", f"-I{d / 'core' / 'include'}",
               f"-I{d / 'model'}", *(SANITIZE_FLAGS if o["sanitize"] else ()),
               *map(str, self.core_sources()), str(d / "hal" / "qmcu_hal_host.c"),
               *map(str, self.model_sources()), "-o", str(self.binary)]
        if o["verbose"]:
            print(" ".join(cmd))
        p = subprocess.run(cmd, capture_output=True, text=True)
        if p.returncode != 0:
            raise ProjectError(f"host build of {d} failed:\n{p.stderr.strip()}")
        return self.binary

    def flash(self, options: dict | None = None) -> None:
        """Nothing to flash: open_transport starts the built program."""
        self.resolve_options("flash", options)
        if not self.binary.exists():
            raise ProjectError(f"{self.binary} does not exist: build() first")

    def _open(self, options: dict) -> Transport:
        self.flash()
        return ProcessTransport([str(self.binary)], f"host firmware {self.binary}",
                                stderr_path=self.binary.parent / "stderr.log")

    def timeouts(self) -> TransportTimeouts:
        return TransportTimeouts(0.5, 2.0, 5.0)
