"""The errors the RPC client raises, below both the client and its pipelined transfers."""

from __future__ import annotations

from . import protocol as P


class RpcError(RuntimeError):
    """Base of every error the client raises."""


class DeviceError(RpcError):
    """The device executed the command and refused it; carries the device's message."""

    def __init__(self, command: str, status: int, message: str):
        self.command, self.status, self.device_message = command, status, message
        try:
            name = P.Status(status).name.lower()
        except ValueError:
            name = f"status {status}"
        super().__init__(f"device refused {command}: {name}: {message}")


class LinkError(RpcError):
    """No intact answer: the device hangs, is gone, or the link is too noisy."""


class DeviceReset(RpcError):
    """An answer came from another boot of the device than the earlier ones: the device reset
    in between and lost what the host had written (its input and output)."""

    def __init__(self, command: str, old: int, new: int):
        self.command, self.old_boot_id, self.new_boot_id = command, old, new
        super().__init__(f"device rebooted before answering {command} (boot id {old:#010x}, "
                         f"now {new:#010x}): its input and output were lost; upload the input "
                         f"again and rerun")


class InputLost(RpcError):
    """The device rebooted (DeviceReset) since the input was written: nothing is run on or
    read from its zeroed input until the input is written again."""


class ModelMismatch(RpcError):
    """The device runs a different model than the host expects."""


class ProtocolMismatch(RpcError):
    """The device speaks another protocol version or frame size than the host."""
