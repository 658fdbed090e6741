"""Start the CLI as a child in its own process group and end only what it started, by pid."""

from __future__ import annotations

import ipaddress
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def _ignore_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def start_cli(*args: str, log: Path, sigint_ignored: bool = False) -> subprocess.Popen:
    """`sigint_ignored`: start it as a non-interactive shell starts a background job."""
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env["PYTHONUNBUFFERED"] = "1"
    return subprocess.Popen(
        [sys.executable, "-m", "leap_ray", *args],
        cwd=REPO,
        env=env,
        stdout=open(log, "w"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
        preexec_fn=_ignore_sigint if sigint_ignored else None,
    )


def run_cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    return subprocess.run(
        [sys.executable, "-m", "leap_ray", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def processes() -> dict[int, tuple[str, int, int]]:
    """pid -> (state, parent pid, process group) of every process, from /proc."""
    found = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            found[int(entry.name)] = (fields[0], int(fields[1]), int(fields[2]))
    return found


def group_alive(pgid: int) -> list[int]:
    """Live processes (zombies aside) of process group `pgid`."""
    return [pid for pid, (state, _, group) in processes().items() if group == pgid and state != "Z"]


def descendants(pid: int) -> set[int]:
    """Every process below `pid`: the Ray processes a node started, wherever their group."""
    children: dict[int, list[int]] = {}
    for child, (_, parent, _) in processes().items():
        children.setdefault(parent, []).append(child)
    found, stack = set(), [pid]
    while stack:
        for child in children.get(stack.pop(), []):
            found.add(child)
            stack.append(child)
    return found


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def wait_for(predicate, timeout: float, what: str, interval: float = 0.2):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout} s waiting for {what}")


def end_tree(
    proc: subprocess.Popen, timeout: float = 20, signals=(signal.SIGTERM, signal.SIGKILL)
) -> None:
    """SIGTERM then SIGKILL (or `signals` in turn) the child's process group, then SIGKILL
    anything below it that escaped it."""
    below = descendants(proc.pid)
    for sig in signals:
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            pass
        try:
            proc.wait(timeout=timeout)
            break
        except subprocess.TimeoutExpired:
            continue
    for pid in below:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def listening_sockets(pids: set[int]) -> list[tuple[str, int, int]]:
    """(address, port, pid) of every TCP socket in LISTEN state that one of `pids` holds, read
    from /proc (IPv4 and IPv6)."""
    owner = {}
    for pid in pids:
        try:
            for fd in Path(f"/proc/{pid}/fd").iterdir():
                target = os.readlink(fd)
                if target.startswith("socket:["):
                    owner[int(target[8:-1])] = pid
        except OSError:
            continue
    found = []
    for table, width in (("/proc/net/tcp", 8), ("/proc/net/tcp6", 32)):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            local, state, inode = fields[1], fields[3], int(fields[9])
            if state != "0A" or inode not in owner:
                continue
            hex_address, hex_port = local.split(":")
            raw = bytes.fromhex(hex_address)
            if width == 8:
                address = ".".join(str(b) for b in raw[::-1])
            else:  # four little-endian 32-bit words
                words = [raw[i : i + 4][::-1] for i in range(0, 16, 4)]
                address = ":".join(b"".join(words)[i : i + 2].hex() for i in range(0, 16, 2))
            found.append((address, int(hex_port, 16), owner[inode]))
    return found


def loopback(address: str) -> bool:
    """An address of `listening_sockets` that only this machine reaches (IPv4-mapped included)."""
    ip = ipaddress.ip_address(address)
    mapped = getattr(ip, "ipv4_mapped", None)
    return ip.is_loopback or (mapped is not None and mapped.is_loopback)
