"""The amplifier behind one small interface: ``switch(on)``, ``state()``, and an optional fault
input (``fault()``, ``watch_fault(callback)``).

``GpiodAmplifier`` drives a relay board and reads the amplifier's protect/thermal output through
libgpiod v2 (the ``gpiod`` Python binding, an optional dependency: ``pip install 'gpiod>=2.1'``;
the old /sys/class/gpio interface is deprecated and gone from new kernels). It uses only a
little of the binding (open a chip, map a line name to its offset, request lines, set and get
values, wait for and read edge events), so tests hand it a fake chip with the same calls
(tests/agent/fake_gpiod.py). ``RecordingAmplifier`` is for nodes without a relay and for tests:
it only records what it was told (and can be told to fail, to test the ``amp_fault`` path).

When the relay is switched is amp_control.py's business.
"""
from __future__ import annotations

import errno
import logging
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

from .config import AmpConfig, AmpKind, Bias, ConfigError

log = logging.getLogger(__name__)

CONSUMER = "loa-agent"
FAULT_POLL_S = 0.2    # the fault line is re-read this often even without an edge event

FaultCallback = Callable[[bool], None]


class AmpError(RuntimeError):
    """The relay could not be switched (reported as alarm ``amp_fault``)."""


class Amplifier(ABC):
    kind = "amp"
    has_relay = True       # False: nothing to switch, so playback does not wait for it

    @abstractmethod
    def switch(self, on: bool) -> None:
        """Switch the amplifier on or off; AmpError when the relay does not obey."""

    @abstractmethod
    def state(self) -> bool | None:
        """Whether the amplifier is on; None when it cannot be known."""

    def fault(self) -> bool | None:
        """Whether the amplifier's fault input is asserted now; None without a fault input."""
        return None

    def fault_detail(self) -> str:
        """What an asserted fault input means, for the ``amp_fault`` alarm."""
        return "amplifier fault input asserted (protection or over-temperature)"

    def watch_fault(self, callback: FaultCallback) -> None:  # noqa: B027 - optional hook
        """Call ``callback(asserted)`` from a thread of its own with the fault input's state,
        first once, then at each change, until ``close``. Nothing without a fault input."""

    def close(self) -> None:  # noqa: B027 - optional hook: most amplifiers hold nothing
        """Release what the implementation holds (and stop watching the fault input)."""


class RecordingAmplifier(Amplifier):
    """No relay: remembers the last switch (``state`` is None until the first one).

    ``fail_with`` makes every switch raise AmpError with that text (a test double's fault).
    ``has_relay`` True makes it stand for a relay, so the agent powers it around playback.
    """

    kind = AmpKind.NONE

    def __init__(self, initial: bool | None = None, fail_with: str | None = None,
                 has_relay: bool = False):
        self._on = initial
        self.fail_with = fail_with
        self.has_relay = has_relay
        self.history: list[bool] = []

    def switch(self, on: bool) -> None:
        if self.fail_with:
            raise AmpError(self.fail_with)
        self._on = bool(on)
        self.history.append(bool(on))

    def state(self) -> bool | None:
        return self._on


def load_gpiod() -> Any:
    """The ``gpiod`` module (libgpiod v2 binding); ConfigError when it is not installed."""
    try:
        import gpiod  # type: ignore[import-not-found,unused-ignore]
    except ImportError:
        raise ConfigError("amp.kind", "\"gpio\" needs the libgpiod v2 Python binding: "
                                      "pip install 'gpiod>=2.1' in the agent's virtualenv "
                                      "(hardware/install-pi.sh does)") from None
    if not hasattr(gpiod, "request_lines"):
        raise ConfigError("amp.kind", f"the gpiod module found is libgpiod v1 "
                                      f"({getattr(gpiod, '__file__', '?')}): the agent needs v2 "
                                      f"(pip install 'gpiod>=2.1')")
    return gpiod


def _chip_info(path: str, gpiod: Any) -> Any:
    """The chip's info (label, num_lines); OSError when it cannot be opened."""
    chip = gpiod.Chip(path)
    try:
        return chip.get_info()
    finally:
        chip.close()


def _describe(path: str, gpiod: Any) -> str:
    try:
        info = _chip_info(path, gpiod)
    except OSError as err:
        return f"{path} ({err.strerror})"
    return f"{path} [{info.label}, {info.num_lines} lines]"


def find_chip(spec: str, gpiod: Any, dev: Path = Path("/dev")) -> str:
    """The device path of the chip ``spec`` names: a path, ``gpiochipN``, or a chip label."""
    chips = sorted(str(p) for p in dev.glob("gpiochip*") if gpiod.is_gpiochip_device(str(p)))
    if spec.startswith("/"):
        candidates = [spec]
    elif spec.startswith("gpiochip") and spec[8:].isdigit():
        candidates = [str(dev / spec)]
    else:
        candidates = []
        for path in chips:
            try:
                if _chip_info(path, gpiod).label == spec:
                    candidates = [path]
                    break
            except OSError:
                continue  # one this user may not open is not the one (the error lists it)
    if candidates and gpiod.is_gpiochip_device(candidates[0]):
        return candidates[0]
    here = ", ".join(_describe(p, gpiod) for p in chips) or "none"
    raise ConfigError("amp.chip", f"no GPIO chip {spec!r} on this machine (chips here: {here})")


class GpiodAmplifier(Amplifier):
    """The relay on ``config.relay`` and the fault input on ``config.fault_line`` of
    ``config.chip``, requested at construction: a chip or line that does not exist, is busy
    or may not be opened is a ConfigError naming its key, so the agent refuses to start.

    The relay is requested as an output, off (``active_high`` False for the common active-low
    relay boards: the library inverts it). The fault line is an input with edge detection, the
    configured bias and debounce, its active level the fault's. ``gpiod`` is the binding module
    (tests pass a fake); ``dev`` where the chips' device files are."""

    kind = AmpKind.GPIO

    def __init__(self, config: AmpConfig, gpiod: Any = None, dev: Path = Path("/dev")):
        self._gpiod = gpiod if gpiod is not None else load_gpiod()
        self.config = config
        self.path = find_chip(config.chip, self._gpiod, dev)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._watcher: threading.Thread | None = None
        self._relay: Any = None
        self._fault_req: Any = None
        self._fault_now: bool | None = None
        try:
            self._chip = self._gpiod.Chip(self.path)
        except OSError as err:
            raise ConfigError("amp.chip", self._open_problem(err)) from None
        try:
            self.label = self._chip.get_info().label
            self.relay_offset = self._offset(config.relay, "relay_line")
            self.fault_offset = (None if config.fault_line is None
                                 else self._offset(config.fault_line, "fault_line"))
            self._relay = self._request("relay_line", self.relay_offset, self._relay_settings())
            if self.fault_offset is not None:
                self._fault_req = self._request("fault_line", self.fault_offset,
                                                self._fault_settings())
        except BaseException:
            self.close()
            raise
        log.info("amplifier relay on %s line %s%s", self.path, self.relay_offset,
                 "" if self.fault_offset is None else f", fault input on line {self.fault_offset}")

    # --- setting up ---------------------------------------------------------------------------
    def _open_problem(self, err: OSError) -> str:
        if err.errno in (errno.EACCES, errno.EPERM):
            return (f"{self.path}: permission denied (the agent's user needs the gpio group, "
                    f"or a udev rule giving it /dev/gpiochip*)")
        return f"{self.path}: {err.strerror or err}"

    def _offset(self, line: int | str, name: str) -> int:
        try:
            return int(self._chip.line_offset_from_id(line))
        except (OSError, ValueError):
            lines = self._chip.get_info().num_lines
            what = f"no line named {line!r}" if isinstance(line, str) else f"no line {line}"
            raise ConfigError(f"amp.{name}", f"chip {self.path} [{self.label}] has {what} "
                                             f"(offsets 0-{lines - 1})") from None

    def _relay_settings(self) -> Any:
        g = self._gpiod
        return g.LineSettings(direction=g.line.Direction.OUTPUT,
                              active_low=not self.config.active_high,
                              output_value=g.line.Value.INACTIVE)

    def _fault_settings(self) -> Any:
        g = self._gpiod
        bias = {Bias.AS_IS: g.line.Bias.AS_IS, Bias.PULL_UP: g.line.Bias.PULL_UP,
                Bias.PULL_DOWN: g.line.Bias.PULL_DOWN,
                Bias.DISABLED: g.line.Bias.DISABLED}[Bias(self.config.fault_bias)]
        return g.LineSettings(direction=g.line.Direction.INPUT, edge_detection=g.line.Edge.BOTH,
                              bias=bias, active_low=not self.config.fault_active_high,
                              debounce_period=timedelta(milliseconds=self.config.fault_debounce_ms))

    def _request(self, name: str, offset: int, settings: Any) -> Any:
        try:
            return self._chip.request_lines({offset: settings},
                                            consumer=f"{CONSUMER} {name.split('_')[0]}")
        except OSError as err:
            if err.errno == errno.EBUSY:
                user = self._chip.get_line_info(offset).consumer or "another program"
                problem = f"line {offset} of {self.path} is in use by {user}"
            else:
                problem = self._open_problem(err)
            raise ConfigError(f"amp.{name}", problem) from None

    # --- the relay ----------------------------------------------------------------------------
    def switch(self, on: bool) -> None:
        value = self._gpiod.line.Value
        want = value.ACTIVE if on else value.INACTIVE
        with self._lock:
            if self._relay is None:
                raise AmpError("the relay's line was released (agent stopping)")
            try:
                self._relay.set_value(self.relay_offset, want)
                got = self._relay.get_value(self.relay_offset)
            except (OSError, ValueError, RuntimeError) as err:
                raise AmpError(f"relay line {self.relay_offset} of {self.path}: {err}") from None
            if got != want:
                raise AmpError(f"relay line {self.relay_offset} of {self.path} reads back "
                               f"{'on' if got == value.ACTIVE else 'off'}")

    def state(self) -> bool | None:
        with self._lock:
            if self._relay is None:
                return None
            try:
                level = self._relay.get_value(self.relay_offset)
            except (OSError, ValueError, RuntimeError):
                return None
        return bool(level == self._gpiod.line.Value.ACTIVE)

    # --- the fault input ----------------------------------------------------------------------
    def fault(self) -> bool | None:
        return self._fault_now

    def watch_fault(self, callback: FaultCallback) -> None:
        if self._fault_req is None or self._watcher is not None:
            return
        self._watcher = threading.Thread(target=self._watch, args=(callback,),
                                         name="loa-amp-fault", daemon=True)
        self._watcher.start()

    def _read_fault(self) -> bool | None:
        try:
            if self._fault_req.wait_edge_events(FAULT_POLL_S):
                self._fault_req.read_edge_events()  # the level read below is what counts
            return bool(self._fault_req.get_value(self.fault_offset)
                        == self._gpiod.line.Value.ACTIVE)
        except (OSError, ValueError, RuntimeError) as err:
            log.error("fault line %s of %s unreadable: %s", self.fault_offset, self.path, err)
            self._stop.wait(FAULT_POLL_S)
            return None

    def _watch(self, callback: FaultCallback) -> None:
        reported: bool | None = None
        while not self._stop.is_set():
            now = self._read_fault()
            self._fault_now = now
            if now is not None and now != reported and not self._stop.is_set():
                reported = now
                try:
                    callback(now)
                except Exception:  # noqa: BLE001 - the watcher must outlive a bad callback
                    log.exception("fault callback failed")

    def fault_detail(self) -> str:
        level = "high" if self.config.fault_active_high else "low"
        return (f"amplifier fault input asserted (line {self.fault_offset} of {self.path} "
                f"{level}: protection or over-temperature)")

    def close(self) -> None:
        """Stop watching the fault input, switch the relay off and release the lines."""
        self._stop.set()
        if self._watcher is not None:
            self._watcher.join(FAULT_POLL_S * 10)
        relay = self._relay
        with self._lock:
            for request in (relay, self._fault_req):
                if request is None:
                    continue
                try:
                    if request is relay:
                        request.set_value(self.relay_offset, self._gpiod.line.Value.INACTIVE)
                    request.release()
                except (OSError, ValueError, RuntimeError) as err:
                    log.warning("releasing GPIO lines: %s", err)
            self._relay = self._fault_req = None
            chip, self._chip = getattr(self, "_chip", None), None
            if chip is not None:
                chip.close()


def make_amplifier(config: AmpConfig) -> Amplifier:
    """The amplifier ``config.kind`` names (ConfigError when its chip or lines are wrong)."""
    if config.kind == AmpKind.GPIO:
        return GpiodAmplifier(config)
    return RecordingAmplifier()
