"""A fake of what device_agent/amp.py uses of the libgpiod v2 binding (``gpiod``): chips found by
path, their info and line names, exclusive line requests with the library's own LineSettings
and enums (active-low, bias, edge detection), set and get values, and edge events. The kernel
here has no gpio-sim, so the amplifier is tested against this; test_agent_amp.py also has the
gpio-sim test for kernels that offer it.

``FakeGpiod(dev)`` stands for the module; ``add_chip`` makes a chip (and its device file in
``dev``). On a ``FakeDevice`` a test reads what the relay did (``changes``, with wall-clock ms
like the file sink's ``started_at``) and drives an input line from outside (``drive``).
"""
from __future__ import annotations

import errno
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import gpiod
from gpiod.line import Bias, Direction, Edge, Value


def now_ms() -> int:
    return int(time.time() * 1000)


@dataclass(frozen=True)
class FakeChipInfo:
    name: str
    label: str
    num_lines: int


@dataclass(frozen=True)
class FakeLineInfo:
    offset: int
    name: str | None
    used: bool
    consumer: str | None


class FakeDevice:
    """One GPIO chip: physical levels of its lines, who holds them, what happened to them."""

    def __init__(self, path: str, label: str, names: list[str | None]):
        self.path, self.label, self.names = path, label, names
        self.cond = threading.Condition()
        self.outputs: dict[int, int] = {}             # offset -> physical level driven by us
        self.external: dict[int, int] = {}            # offset -> level driven from outside
        self.owners: dict[int, FakeRequest] = {}
        self.timeline: list[tuple[int, int, int]] = []   # (ms, offset, physical level)
        self.reads: dict[int, int] = {}               # offset -> get_value calls
        self.denied = False                           # True: opening it is EACCES

    def level(self, offset: int) -> int:
        """The physical level of a line: what drives it, else its bias."""
        if offset in self.outputs:
            return self.outputs[offset]
        if offset in self.external:
            return self.external[offset]
        req = self.owners.get(offset)
        return 1 if req is not None and req.settings[offset].bias == Bias.PULL_UP else 0

    def drive(self, offset: int, level: int) -> None:
        """Something outside (the amplifier's fault output) drives an input line."""
        with self.cond:
            before = self.level(offset)
            self.external[offset] = level
            req = self.owners.get(offset)
            if req is not None and before != level:
                req.edge(offset, level)
            self.cond.notify_all()

    def changes(self, offset: int) -> list[tuple[int, int]]:
        """(ms, physical level) each time the line was set."""
        with self.cond:
            return [(t, lvl) for t, off, lvl in self.timeline if off == offset]

    def wait_reads(self, offset: int, count: int, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        with self.cond:
            while self.reads.get(offset, 0) < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self.cond.wait(left)
            return True


class FakeRequest:
    def __init__(self, device: FakeDevice, settings: dict, consumer: str | None):
        self.device, self.settings, self.consumer = device, settings, consumer
        self.events: list[gpiod.EdgeEvent] = []
        self.seq = 0
        self.released = False

    def _check(self, offset: int) -> None:
        if self.released:
            raise gpiod.RequestReleasedError()
        if offset not in self.settings:
            raise ValueError(f"line {offset} not in this request")

    def edge(self, offset: int, level: int) -> None:
        s = self.settings[offset]
        logical = level ^ s.active_low
        wanted = {Edge.BOTH: True, Edge.RISING: logical == 1, Edge.FALLING: logical == 0}
        if wanted.get(s.edge_detection, False):
            self.seq += 1
            kind = (gpiod.EdgeEvent.Type.RISING_EDGE if logical
                    else gpiod.EdgeEvent.Type.FALLING_EDGE)
            self.events.append(gpiod.EdgeEvent(kind.value, time.monotonic_ns(), offset,
                                               self.seq, self.seq))

    def set_value(self, offset: int, value: Value) -> None:
        with self.device.cond:
            self._check(offset)
            s = self.settings[offset]
            if s.direction != Direction.OUTPUT:
                raise OSError(errno.EPERM, "line is not an output")
            level = int(value == Value.ACTIVE) ^ s.active_low
            self.device.outputs[offset] = level
            self.device.timeline.append((now_ms(), offset, level))
            self.device.cond.notify_all()

    def get_value(self, offset: int) -> Value:
        with self.device.cond:
            self._check(offset)
            self.device.reads[offset] = self.device.reads.get(offset, 0) + 1
            self.device.cond.notify_all()
            logical = self.device.level(offset) ^ self.settings[offset].active_low
            return Value.ACTIVE if logical else Value.INACTIVE

    def wait_edge_events(self, timeout: float | None = None) -> bool:
        deadline = time.monotonic() + (timeout or 0)
        with self.device.cond:
            while not self.events and not self.released:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self.device.cond.wait(left)
            return bool(self.events)

    def read_edge_events(self, max_events: int | None = None) -> list[gpiod.EdgeEvent]:
        with self.device.cond:
            out, self.events = self.events, []
            return out

    def release(self) -> None:
        with self.device.cond:
            for offset in self.settings:
                if self.device.owners.get(offset) is self:
                    del self.device.owners[offset]
                    self.device.outputs.pop(offset, None)   # an output left undriven
            self.released = True
            self.device.cond.notify_all()


class FakeChip:
    def __init__(self, device: FakeDevice):
        self.device = device
        self.closed = False

    def get_info(self) -> FakeChipInfo:
        return FakeChipInfo(Path(self.device.path).name, self.device.label,
                            len(self.device.names))

    def line_offset_from_id(self, id: str | int) -> int:
        if isinstance(id, str):
            if id in self.device.names:
                return self.device.names.index(id)
            if not id.isdigit():
                raise OSError(errno.ENOENT, "no such line")
            id = int(id)
        if id >= len(self.device.names):
            raise ValueError("line offset of out range")
        return id

    def get_line_info(self, line: int | str) -> FakeLineInfo:
        offset = self.line_offset_from_id(line)
        owner = self.device.owners.get(offset)
        return FakeLineInfo(offset, self.device.names[offset], owner is not None,
                            owner.consumer if owner else None)

    def request_lines(self, config: dict, consumer: str | None = None,
                      event_buffer_size: int | None = None) -> FakeRequest:
        settings = {self.line_offset_from_id(line): s or gpiod.LineSettings()
                    for line, s in config.items()}
        with self.device.cond:
            if any(offset in self.device.owners for offset in settings):
                raise OSError(errno.EBUSY, "Device or resource busy")
            req = FakeRequest(self.device, settings, consumer)
            for offset, s in settings.items():
                self.device.owners[offset] = req
                if s.direction == Direction.OUTPUT:
                    level = int(s.output_value == Value.ACTIVE) ^ s.active_low
                    self.device.outputs[offset] = level
                    self.device.timeline.append((now_ms(), offset, level))
            return req

    def close(self) -> None:
        self.closed = True


class FakeGpiod:
    """Stands for the ``gpiod`` module: the library's own types, fake chips."""

    LineSettings = gpiod.LineSettings
    EdgeEvent = gpiod.EdgeEvent
    line = gpiod.line

    def __init__(self, dev: Path):
        self.dev = dev
        dev.mkdir(parents=True, exist_ok=True)
        self.devices: dict[str, FakeDevice] = {}

    def add_chip(self, label: str, names: list[str | None]) -> FakeDevice:
        path = str(self.dev / f"gpiochip{len(self.devices)}")
        Path(path).touch()
        self.devices[path] = FakeDevice(path, label, names)
        return self.devices[path]

    def is_gpiochip_device(self, path: str) -> bool:
        return path in self.devices

    def Chip(self, path: str) -> FakeChip:  # noqa: N802 - the module's class name
        if path not in self.devices:
            raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), path)
        if self.devices[path].denied:
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), path)
        return FakeChip(self.devices[path])


def pi_names(count: int = 58) -> list[str | None]:
    """Line names as a Raspberry Pi 4's pinctrl-bcm2711 chip gives them (GPIO0..GPIO27)."""
    return [f"GPIO{n}" if n < 28 else None for n in range(count)]
