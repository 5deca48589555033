"""The project API, in the shape microTVM users know: a handler per platform template with
``server_info_query``, ``generate_project``, ``build``, ``flash``, ``open_transport``,
``read_transport``, ``write_transport``, ``close_transport``; each method takes an options
dict validated against the template's ``ProjectOption`` list.

A generated project is self-contained: it holds copies of the firmware core, the template's
HAL and the model sources, plus ``project.json`` (template, options, model) so
``open_project(dir)`` can pick it up again later."""
from __future__ import annotations

import json
import shutil
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .transport import Transport, TransportError, TransportTimeouts

PACKAGE_DIR = Path(__file__).resolve().parent
FIRMWARE_DIR = PACKAGE_DIR / "firmware"
PROJECT_FILE = "project.json"
METHODS = ("generate_project", "build", "flash", "open_transport")


class ProjectError(RuntimeError):
    """A user-fixable problem with a project (bad option, missing tool, missing model)."""


class ToolMissingError(ProjectError):
    """A tool the template needs is not installed; the message says what to install."""


@dataclass(frozen=True)
class ProjectOption:
    name: str
    help: str
    type: str = "str"                       # "str" | "int" | "bool"
    default: Any = None
    choices: tuple | None = None
    required: tuple[str, ...] = ()          # methods that need it
    optional: tuple[str, ...] = ()          # methods that accept it

    def accepts(self, method: str) -> bool:
        return method in self.required or method in self.optional


@dataclass
class ServerInfo:
    platform_name: str
    is_template: bool
    model_dir: str | None
    project_options: list[ProjectOption] = field(default_factory=list)


MAX_PAYLOAD_OPTION = ProjectOption(
    "max_payload", "largest RPC frame payload in bytes (device RAM: about 2×this)", "int", 512,
    optional=("generate_project",))


def _coerce(opt: ProjectOption, value):
    if opt.type == "int":
        if isinstance(value, bool) or not isinstance(value, int):
            try:
                value = int(value)
            except (TypeError, ValueError):
                raise ProjectError(f"option {opt.name}: expected an integer, got {value!r}") \
                    from None
    elif opt.type == "bool":
        if isinstance(value, str):
            if value.lower() not in ("1", "0", "true", "false", "yes", "no", "on", "off"):
                raise ProjectError(f"option {opt.name}: expected true/false, got {value!r}")
            value = value.lower() in ("1", "true", "yes", "on")
        value = bool(value)
    elif value is not None:
        value = str(value)
    if opt.choices is not None and value not in opt.choices:
        raise ProjectError(f"option {opt.name}: {value!r} is not one of "
                           f"{', '.join(map(str, opt.choices))}")
    return value


class ProjectAPIHandler:
    """Base of the templates. Subclasses set `platform_name`, `options`, and implement the
    `_generate`, `build`, `flash`, `_open` hooks."""

    platform_name = ""
    options: tuple[ProjectOption, ...] = ()

    def __init__(self, project_dir: str | Path | None = None):
        self.project_dir = Path(project_dir) if project_dir else None
        self.project: dict = {}
        if self.project_dir is not None:
            meta = self.project_dir / PROJECT_FILE
            if not meta.exists():
                raise ProjectError(f"{self.project_dir} is not a generated project "
                                   f"(no {PROJECT_FILE})")
            self.project = json.loads(meta.read_text())
        self.transport: Transport | None = None

    # -- options ---------------------------------------------------------------------------

    def resolve_options(self, method: str, options: dict | None) -> dict:
        """Defaults from generate time, then the given options; unknown or missing → error."""
        options = dict(options or {})
        known = {o.name: o for o in self.options}
        for k in options:
            if k not in known:
                raise ProjectError(f"{self.platform_name}: unknown option {k!r}; known: "
                                   f"{', '.join(sorted(known))}")
            if not known[k].accepts(method):
                raise ProjectError(f"{self.platform_name}: option {k!r} does not apply to "
                                   f"{method}")
        saved = self.project.get("options", {})
        out = {}
        for o in self.options:
            if not o.accepts(method):
                continue
            if o.name in options:
                out[o.name] = _coerce(o, options[o.name])
            elif o.name in saved:
                out[o.name] = saved[o.name]
            elif method in o.required and o.default is None:
                raise ProjectError(f"{self.platform_name}: {method} needs option {o.name!r} "
                                   f"({o.help})")
            else:
                out[o.name] = o.default
        return out

    # -- the API ---------------------------------------------------------------------------

    def server_info_query(self, tvm_version: str | None = None) -> ServerInfo:
        model_dir = str(self.project_dir / "model") if self.project_dir else None
        return ServerInfo(self.platform_name, self.project_dir is None, model_dir,
                          list(self.options))

    def generate_project(self, model_dir, project_dir, options: dict | None = None):
        """Create `project_dir` for the model in `model_dir` (qmcu_model.c/.h implementing
        firmware/include/qmcu_model_api.h). Returns the handler of the new project."""
        opts = self.resolve_options("generate_project", options)
        model_dir, project_dir = Path(model_dir), Path(project_dir)
        sources = sorted(model_dir.glob("*.c")) if model_dir.is_dir() else []
        if not sources:
            raise ProjectError(f"model directory {model_dir} holds no C sources; generate the "
                               "model library first (qmcu_model.c/.h)")
        if project_dir.exists() and any(project_dir.iterdir()):
            if not (project_dir / PROJECT_FILE).exists():
                raise ProjectError(f"{project_dir} exists and is not a project; choose an "
                                   "empty or new directory")
            shutil.rmtree(project_dir)
        project_dir.mkdir(parents=True, exist_ok=True)
        shutil.copytree(model_dir, project_dir / "model",
                        ignore=shutil.ignore_patterns("*.o", "build"))
        shutil.copytree(FIRMWARE_DIR / "include", project_dir / "core" / "include")
        shutil.copytree(FIRMWARE_DIR / "src", project_dir / "core" / "src")
        model_meta = {}
        if (model_dir / "model.json").exists():
            model_meta = json.loads((model_dir / "model.json").read_text())
        meta = {"template": self.platform_name, "options": opts, "model": model_meta}
        self._generate(project_dir, opts)
        (project_dir / PROJECT_FILE).write_text(json.dumps(meta, indent=1) + "\n")
        return type(self)(project_dir)

    def build(self, options: dict | None = None) -> Path:
        raise NotImplementedError

    def flash(self, options: dict | None = None) -> None:
        raise NotImplementedError

    def open_transport(self, options: dict | None = None) -> TransportTimeouts:
        if self.transport is not None:
            raise ProjectError(f"{self.platform_name}: transport already open")
        self.transport = self._open(self.resolve_options("open_transport", options))
        return self.timeouts()

    def close_transport(self) -> None:
        if self.transport is not None:
            t, self.transport = self.transport, None
            t.close()

    def read_transport(self, n: int, timeout_sec: float | None) -> bytes:
        return self._need_transport().read(n, timeout_sec)

    def write_transport(self, data: bytes, timeout_sec: float | None) -> None:
        self._need_transport().write(data, timeout_sec)

    # -- helpers ---------------------------------------------------------------------------

    def timeouts(self) -> TransportTimeouts:
        return TransportTimeouts(1.0, 5.0, 10.0)

    def _need_transport(self) -> Transport:
        if self.transport is None:
            raise TransportError(f"{self.platform_name}: open_transport() first")
        return self.transport

    def _need_project(self) -> Path:
        if self.project_dir is None:
            raise ProjectError(f"{self.platform_name}: this is the template; call "
                               "generate_project() and use the handler it returns")
        return self.project_dir

    def _generate(self, project_dir: Path, options: dict) -> None:
        pass

    def _open(self, options: dict) -> Transport:
        raise NotImplementedError

    def model_sources(self) -> list[Path]:
        return sorted((self._need_project() / "model").glob("*.c"))

    def core_sources(self) -> list[Path]:
        return sorted((self._need_project() / "core" / "src").glob("*.c"))

    def client(self, connect: bool = True, **kwargs):
        """An RPC client over this project's open transport, connected (device answered and
        its info read) within the template's session-start timeouts."""
        from .client import Client
        c = Client(self._need_transport(), **kwargs)
        if connect:
            t = self.timeouts()
            c.connect(t.session_start_retry_timeout_sec, t.session_start_timeout_sec)
        return c

    @contextmanager
    def session(self, expected_hash: str | None = None, flash: bool = True,
                flash_options: dict | None = None, transport_options: dict | None = None,
                **client_kwargs):
        """Flash, open the transport, connect, refuse a device whose model hash differs from
        `expected_hash`, yield the client; the transport is closed (QEMU ended) on exit."""
        if flash:
            self.flash(flash_options)
        self.open_transport(transport_options)
        try:
            c = self.client(**client_kwargs)
            if expected_hash is not None:
                c.check_model(expected_hash)
            yield c
        finally:
            self.close_transport()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close_transport()
