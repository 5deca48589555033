"""Project API and firmware for running compiled models on Cortex-M boards.

    api = micro_project.get_template("qemu")
    project = api.generate_project(model_dir, "out/proj", {"board": "mps2-an386"})
    project.build()
    with project.session(expected_hash=model_hash) as client:    # flash, link, connect, check
        output, timing = client.infer(input_bytes)
    instructions = project.instructions(timing.ticks_per_run)

The same steps one by one: ``flash()``, ``open_transport()``, ``client()`` (or
``read_transport``/``write_transport`` for raw bytes), ``close_transport()``.

Templates: ``host`` (native gcc, pipes), ``qemu`` (bare metal on QEMU's Arm boards), ``zephyr``
(a Zephyr application for Cortex-M boards). The wire protocol is specified in PROTOCOL.md."""
from __future__ import annotations

import json
from pathlib import Path

from .project_api import (PROJECT_FILE, ProjectAPIHandler, ProjectError, ProjectOption,
                          ServerInfo, ToolMissingError)

TEMPLATES = ("host", "qemu", "zephyr")


def _template_class(name: str) -> type[ProjectAPIHandler]:
    if name == "host":
        from .templates.host import HostProject
        return HostProject
    if name == "qemu":
        from .templates.qemu import QemuProject
        return QemuProject
    if name == "zephyr":
        from .templates.zephyr import ZephyrProject
        return ZephyrProject
    raise ProjectError(f"unknown template {name!r}; templates: {', '.join(TEMPLATES)}")


def get_template(name: str) -> ProjectAPIHandler:
    """The template handler (call generate_project on it)."""
    return _template_class(name)()


def open_project(project_dir) -> ProjectAPIHandler:
    """The handler of an existing generated project."""
    meta = Path(project_dir) / PROJECT_FILE
    if not meta.exists():
        raise ProjectError(f"{project_dir} is not a generated project (no {PROJECT_FILE})")
    return _template_class(json.loads(meta.read_text())["template"])(project_dir)


__all__ = ["TEMPLATES", "get_template", "open_project", "ProjectAPIHandler", "ProjectError",
           "ProjectOption", "ServerInfo", "ToolMissingError"]
