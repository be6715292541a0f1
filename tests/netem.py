"""A 4G link for tests, two ways: network namespaces joined to the host by veth pairs and
shaped with ``tc netem`` (needs root), or a TCP proxy on loopback that delays, loses (as TCP
sees a lost segment: late, by a retransmission) and cuts (an outage holds every byte, as a link
that answers nothing does). Both are used by tests/e2e/test_4g_emulation.py."""
from __future__ import annotations

import asyncio
import ipaddress
import random
import secrets
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

TC = shutil.which("tc") or "/usr/sbin/tc"
IP = shutil.which("ip") or "/usr/sbin/ip"
NETEM_4G = ["delay", "300ms", "100ms", "loss", "5%"]  # as issue 10 asks
NETEM_OUTAGE = ["delay", "300ms", "100ms", "loss", "100%"]
RETRANSMIT_S = 1.0  # what a lost segment costs on a link (TCP's first retransmission timeout)


class LinkProxy:
    """A TCP forwarder ``listen_host:port`` -> ``target`` in its own thread. Each chunk is
    held ``delay_s ± jitter_s`` (order kept); with probability ``loss`` it is held a
    retransmission longer. ``cut()`` starts an outage: nothing moves either way (new
    connections wait too) until ``restore()``; what waited is sent then, as TCP would."""

    def __init__(self, target: tuple[str, int], listen_host: str = "127.0.0.1",
                 delay_s: float = 0.0, jitter_s: float = 0.0, loss: float = 0.0):
        self.target = target
        self.delay_s, self.jitter_s, self.loss = delay_s, jitter_s, loss
        self._rng = random.Random(secrets.randbits(32))
        self._loop = asyncio.new_event_loop()
        self._up: asyncio.Event | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        ready = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(listen_host, ready), daemon=True)
        self._thread.start()
        assert ready.wait(10), "the proxy did not start"
        self.host, self.port = listen_host, self._port

    def _run(self, host: str, ready: threading.Event) -> None:
        asyncio.set_event_loop(self._loop)

        async def start() -> None:
            self._up = asyncio.Event()
            self._up.set()
            self._server = await asyncio.start_server(self._client, host, 0)
            self._port = self._server.sockets[0].getsockname()[1]
            ready.set()
        self._loop.run_until_complete(start())
        self._loop.run_forever()

    def shape(self, delay_s: float, jitter_s: float, loss: float) -> None:
        self.delay_s, self.jitter_s, self.loss = delay_s, jitter_s, loss

    def cut(self) -> None:
        self._loop.call_soon_threadsafe(self._link, False)

    def restore(self) -> None:
        self._loop.call_soon_threadsafe(self._link, True)

    def _link(self, up: bool) -> None:  # in the loop's thread
        if self._up is None:
            return
        if up:
            self._up.set()
        else:
            self._up.clear()

    def _hold_s(self) -> float:
        held = max(0.0, self._rng.uniform(self.delay_s - self.jitter_s,
                                          self.delay_s + self.jitter_s))
        if self.loss and self._rng.random() < self.loss:
            held += RETRANSMIT_S
        return held

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        assert self._up is not None
        self._writers.add(writer)
        try:
            await self._up.wait()  # an outage: the SYN gets no answer yet
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.close()
            self._writers.discard(writer)
            return
        self._writers.add(up_writer)
        await asyncio.gather(self._pipe(reader, up_writer), self._pipe(up_reader, writer),
                             return_exceptions=True)
        self._writers.discard(writer)
        self._writers.discard(up_writer)

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Read as it comes; deliver each chunk at its time, in order, never during an outage."""
        assert self._up is not None
        queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()
        loop = asyncio.get_running_loop()

        async def deliver() -> None:
            last = 0.0
            while True:
                due, data = await queue.get()
                last = max(last, due)
                await asyncio.sleep(max(0.0, last - loop.time()))
                await self._up.wait()  # type: ignore[union-attr]
                if not data:
                    break
                writer.write(data)
                await writer.drain()
            writer.close()

        sender = asyncio.ensure_future(deliver())
        try:
            while True:
                data = await reader.read(65536)
                queue.put_nowait((loop.time() + self._hold_s(), data))
                if not data:
                    break
            await sender
        finally:
            if not sender.done():
                sender.cancel()
            writer.close()

    def close(self) -> None:
        async def stop() -> None:
            self._server.close()
            for w in list(self._writers):
                w.close()
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        asyncio.run_coroutine_threadsafe(stop(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)


# --- network namespaces --------------------------------------------------------------------------

def _run(*argv: str) -> subprocess.CompletedProcess:
    return subprocess.run(argv, capture_output=True, text=True, timeout=30)


def _check(*argv: str) -> None:
    done = _run(*argv)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)}: {done.stderr.strip() or done.stdout.strip()}")


def netns_unavailable() -> str | None:
    """Why this process cannot make network namespaces, or None when it can (tried for real)."""
    if not shutil.which(IP) and not shutil.which("ip"):
        return "iproute2 (ip) is not installed"
    if not shutil.which(TC) and not shutil.which("tc"):
        return "iproute2's tc is not installed"
    name = f"lpchk{secrets.token_hex(4)}"
    done = _run(IP, "netns", "add", name)
    if done.returncode != 0:
        return f"ip netns add failed: {done.stderr.strip()}"
    _run(IP, "netns", "del", name)
    return None


def _used_networks() -> list[ipaddress.IPv4Network]:
    out = _run(IP, "-o", "-4", "addr", "show").stdout
    nets = []
    for line in out.splitlines():
        parts = line.split()
        if "inet" in parts:
            nets.append(ipaddress.IPv4Interface(parts[parts.index("inet") + 1]).network)
    return nets


@dataclass
class NetnsNode:
    """A namespace joined to the host by a veth pair on a /30 of its own: ``host_ip`` on the
    host's end, ``node_ip`` inside, the host the namespace's default route."""

    name: str
    host_dev: str
    node_dev: str
    host_ip: str
    node_ip: str
    made: list[str] = field(default_factory=list)

    def exec_prefix(self) -> list[str]:
        return [IP, "netns", "exec", self.name]

    def netem(self, args: list[str]) -> None:
        """The same netem on both ends (``add`` the first time, ``change`` after)."""
        for ns, dev in ((None, self.host_dev), (self.name, self.node_dev)):
            prefix = [IP, "netns", "exec", ns] if ns else []
            verb = "change" if f"netem:{dev}" in self.made else "add"
            _check(*prefix, TC, "qdisc", verb, "dev", dev, "root", "netem", *args)
            if verb == "add":
                self.made.append(f"netem:{dev}")

    def link(self, up: bool) -> None:
        """Both ends of the veth up or down (down: an outage as a lost 4G carrier is); the
        namespace's default route comes back with the link."""
        state = "up" if up else "down"
        _check(IP, "link", "set", self.host_dev, state)
        _check(IP, "netns", "exec", self.name, IP, "link", "set", self.node_dev, state)
        if up:
            _check(IP, "netns", "exec", self.name, IP, "route", "replace", "default", "via",
                   self.host_ip)

    def has_netem(self) -> bool:
        """Whether this kernel has the netem qdisc (a kernel without modules may not)."""
        done = _run(IP, "netns", "exec", self.name, TC, "qdisc", "add", "dev", "lo", "root",
                    "netem", "delay", "1ms")
        if done.returncode == 0:
            _run(IP, "netns", "exec", self.name, TC, "qdisc", "del", "dev", "lo", "root")
        return done.returncode == 0

    def remove(self) -> None:
        _run(IP, "link", "del", self.host_dev)  # takes its peer in the namespace with it
        _run(IP, "netns", "del", self.name)


def _free_slash30(rng: random.Random, taken: list[ipaddress.IPv4Network]
                  ) -> ipaddress.IPv4Network:
    for _ in range(1000):
        net = ipaddress.IPv4Network(f"10.{rng.randrange(64, 250)}.{rng.randrange(256)}."
                                   f"{rng.randrange(64) * 4}/30")
        if not any(net.overlaps(t) for t in taken):
            return net
    raise RuntimeError("no free /30 in 10.64.0.0/10")


@contextmanager
def netns_nodes(count: int) -> Iterator[list[NetnsNode]]:
    """``count`` namespaces with names and subnets unique to this call (parallel test workers
    do not clash); all removed afterwards, also when the test fails."""
    tag = secrets.token_hex(3)
    rng = random.Random(secrets.randbits(32))
    taken = _used_networks()
    nodes: list[NetnsNode] = []
    try:
        for i in range(count):
            net = _free_slash30(rng, taken)
            taken.append(net)
            host_ip, node_ip = (str(a) for a in net.hosts())
            node = NetnsNode(f"loa-{tag}-{i}", f"lp{tag}{i}h", f"lp{tag}{i}n", host_ip, node_ip)
            nodes.append(node)
            _check(IP, "netns", "add", node.name)
            _check(IP, "link", "add", node.host_dev, "type", "veth", "peer", "name",
                   node.node_dev)
            _check(IP, "link", "set", node.node_dev, "netns", node.name)
            _check(IP, "addr", "add", f"{host_ip}/30", "dev", node.host_dev)
            _check(IP, "link", "set", node.host_dev, "up")
            inside = [IP, "netns", "exec", node.name]
            _check(*inside, IP, "addr", "add", f"{node_ip}/30", "dev", node.node_dev)
            _check(*inside, IP, "link", "set", node.node_dev, "up")
            _check(*inside, IP, "link", "set", "lo", "up")
            _check(*inside, IP, "route", "add", "default", "via", host_ip)
        yield nodes
    finally:
        for node in nodes:
            node.remove()


def reachable(prefix: list[str], host: str, port: int, timeout: float = 10.0) -> bool:
    """Whether a TCP connection from inside ``prefix`` (``ip netns exec NAME``) to host:port
    succeeds within ``timeout``."""
    script = (f"import socket; socket.create_connection(({host!r}, {port}), "
              f"timeout={timeout}).close()")
    done = subprocess.run([*prefix, sys.executable, "-c", script], capture_output=True,
                          timeout=timeout + 10)
    return done.returncode == 0
