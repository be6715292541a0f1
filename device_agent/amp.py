"""The amplifier's power relay behind one small interface: ``switch(on)`` and ``state()``.

``GpioAmplifier`` drives a relay board from a Raspberry Pi GPIO pin through /sys/class/gpio, or
through libgpiod's ``gpioset`` when sysfs GPIO is missing (newer kernels); ``RecordingAmplifier``
is for nodes without a relay and for tests: it only records what it was told (and can be told
to fail, to test the ``amp_fault`` path).
"""
from __future__ import annotations

import logging
import shutil
import subprocess
import threading
import time
from abc import ABC, abstractmethod
from pathlib import Path

log = logging.getLogger(__name__)


class AmpError(RuntimeError):
    """The relay could not be switched (reported as alarm ``amp_fault``)."""


class Amplifier(ABC):
    kind = "amp"

    @abstractmethod
    def switch(self, on: bool) -> None:
        """Switch the amplifier on or off; AmpError when the relay does not obey."""

    @abstractmethod
    def state(self) -> bool | None:
        """Whether the amplifier is on; None when it cannot be known."""

    def close(self) -> None:  # noqa: B027 - optional hook: most amplifiers hold nothing
        """Release what the implementation holds (the relay keeps its state where it can)."""


class RecordingAmplifier(Amplifier):
    """No relay: remembers the last switch (``state`` is None until the first one).

    ``fail_with`` makes every switch raise AmpError with that text (a test double's fault).
    """

    kind = "none"

    def __init__(self, initial: bool | None = None, fail_with: str | None = None):
        self._on = initial
        self.fail_with = fail_with
        self.history: list[bool] = []

    def switch(self, on: bool) -> None:
        if self.fail_with:
            raise AmpError(self.fail_with)
        self._on = bool(on)
        self.history.append(bool(on))

    def state(self) -> bool | None:
        return self._on


class GpioAmplifier(Amplifier):
    """A relay on BCM pin ``pin``; ``active_high`` False for the common active-low boards."""

    kind = "gpio"

    def __init__(self, pin: int, active_high: bool = True, sysfs: str | Path = "/sys/class/gpio",
                 chip: str = "gpiochip0"):
        self.pin = pin
        self.active_high = active_high
        self.sysfs = Path(sysfs)
        self.chip = chip
        self._held: subprocess.Popen[bytes] | None = None
        self._on: bool | None = None
        self._lock = threading.Lock()

    # sysfs numbers lines globally: the SoC's chip starts at its base (0, or 512 on kernel 6.6+).
    def _sysfs_number(self) -> int:
        for chip in sorted(self.sysfs.glob("gpiochip*")):
            try:
                label = (chip / "label").read_text().strip()
                base = int((chip / "base").read_text())
                ngpio = int((chip / "ngpio").read_text())
            except (OSError, ValueError):
                continue
            if label.startswith("pinctrl-") and self.pin < ngpio:
                return base + self.pin
        return self.pin

    def _sysfs_line(self) -> Path | None:
        if not (self.sysfs / "export").exists():
            return None
        number = self._sysfs_number()
        line = self.sysfs / f"gpio{number}"
        if not line.exists():
            try:
                (self.sysfs / "export").write_text(str(number))
            except OSError as err:
                raise AmpError(f"cannot export GPIO {number}: {err}") from None
            deadline = time.monotonic() + 2  # udev sets permissions after the export
            while not (line / "direction").exists() and time.monotonic() < deadline:
                time.sleep(0.05)
        return line

    def switch(self, on: bool) -> None:
        level = 1 if bool(on) == self.active_high else 0
        with self._lock:
            line = self._sysfs_line()
            if line is not None:
                try:
                    direction = (line / "direction").read_text().strip()
                    if direction != "out":
                        (line / "direction").write_text("high" if level else "low")
                    (line / "value").write_text(str(level))
                    if int((line / "value").read_text().strip()) != level:
                        raise AmpError(f"GPIO {self.pin} reads back {1 - level}")
                except OSError as err:
                    raise AmpError(f"GPIO {self.pin}: {err}") from None
            else:
                self._gpioset(level)
            self._on = bool(on)

    def _gpioset(self, level: int) -> None:
        # libgpiod releases a line when gpioset exits, so a gpioset process holds it.
        if not shutil.which("gpioset"):
            raise AmpError("neither /sys/class/gpio nor gpioset is available")
        self._release()
        version = subprocess.run(["gpioset", "--version"], capture_output=True, text=True,
                                 timeout=5).stdout
        if " v1." in version:
            argv = ["gpioset", "--mode=signal", self.chip, f"{self.pin}={level}"]
        else:
            argv = ["gpioset", "-c", self.chip, f"{self.pin}={level}"]
        try:
            self._held = subprocess.Popen(argv, stdout=subprocess.DEVNULL,
                                          stderr=subprocess.PIPE)
        except OSError as err:
            raise AmpError(f"gpioset: {err}") from None
        try:
            self._held.wait(0.3)
        except subprocess.TimeoutExpired:
            return  # still running: it holds the line
        said = self._held.stderr.read().decode(errors="replace") if self._held.stderr else ""
        self._held = None
        raise AmpError(f"gpioset exited: {said.strip()[:200]}")

    def _release(self) -> None:
        if self._held and self._held.poll() is None:
            self._held.terminate()
            try:
                self._held.wait(2)
            except subprocess.TimeoutExpired:
                self._held.kill()
        self._held = None

    def state(self) -> bool | None:
        with self._lock:
            if (self.sysfs / "export").exists():
                line = self.sysfs / f"gpio{self._sysfs_number()}"
                try:
                    if (line / "direction").read_text().strip() != "out":
                        return None
                    level = int((line / "value").read_text().strip())
                    return (level == 1) == self.active_high
                except (OSError, ValueError):
                    return None
            return self._on if self._held and self._held.poll() is None else None

    def close(self) -> None:
        with self._lock:
            self._release()


def make_amplifier(kind: str, gpio_pin: int = 17, active_high: bool = True) -> Amplifier:
    if kind == "gpio":
        return GpioAmplifier(gpio_pin, active_high)
    return RecordingAmplifier()
