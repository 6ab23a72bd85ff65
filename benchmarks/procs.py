"""Child processes that are always cleaned up, ports, readiness polling and memory readings.

Every server and load generator starts in a session (process group) of its own, so stopping
it kills its whole tree (gunicorn workers, uvicorn reloaders, start.sh) and Ctrl-C in the
terminal reaches only this orchestrator, whose `finally` blocks then stop everything.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path


class BenchmarkError(RuntimeError):
    """A server did not start or a step failed; the message says where to look."""


class Processes:
    """A registry of the children we started; `stop_all` kills every group still alive."""

    def __init__(self) -> None:
        self._children: list[subprocess.Popen[bytes]] = []

    def start(
        self,
        args: Sequence[str],
        *,
        cwd: Path | None = None,
        env: dict[str, str] | None = None,
        log: Path | None = None,
        capture: bool = False,
    ) -> subprocess.Popen[bytes]:
        stdout: int | object = subprocess.DEVNULL
        handle = None
        if capture:
            stdout = subprocess.PIPE
        elif log is not None:
            handle = log.open("ab")
            stdout = handle
        try:
            process = subprocess.Popen(
                list(args),
                cwd=cwd,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=stdout,  # type: ignore[arg-type]
                stderr=subprocess.STDOUT if not capture else subprocess.PIPE,
                start_new_session=True,
            )
        finally:
            if handle is not None:
                handle.close()  # the child holds its own descriptor
        self._children.append(process)
        return process

    def stop(self, process: subprocess.Popen[bytes], timeout: float = 15) -> None:
        """SIGTERM to the process group, SIGKILL after `timeout` seconds."""
        if process.poll() is None:
            _signal_group(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                _signal_group(process.pid, signal.SIGKILL)
                process.wait(timeout=10)
        # Grandchildren that outlived their parent (a worker of a dead master) go as well.
        _signal_group(process.pid, signal.SIGKILL)
        for stream in (process.stdout, process.stderr):
            if stream is not None:
                stream.close()
        if process in self._children:
            self._children.remove(process)

    def stop_all(self) -> None:
        for process in reversed(list(self._children)):
            with contextlib.suppress(Exception):
                self.stop(process, timeout=10)


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


@contextlib.contextmanager
def terminate_as_interrupt() -> Iterator[None]:
    """Treat SIGTERM and SIGHUP like Ctrl-C, so `finally` blocks run and servers stop.

    SIGINT too, even when the shell started us with it ignored (`cmd &` in a script).
    """

    def handler(signum: int, _frame: object) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    signals = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
    previous = {sig: signal.signal(sig, handler) for sig in signals}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until(
    check: Callable[[], bool],
    what: str,
    *,
    process: subprocess.Popen[bytes] | None = None,
    log: Path | None = None,
    timeout: float = 120,
) -> None:
    """Poll `check` every 100 ms until it is true; fail early when `process` exits."""
    deadline = time.monotonic() + timeout
    while True:
        if check():
            return
        if process is not None and process.poll() is not None:
            raise BenchmarkError(f"{what} exited with {process.returncode}{log_tail(log)}")
        if time.monotonic() > deadline:
            raise BenchmarkError(f"{what} not ready after {timeout:.0f} s{log_tail(log)}")
        time.sleep(0.1)


def http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310 (loopback URL)
            return 200 <= response.status < 300
    except (OSError, urllib.error.URLError):
        return False


def log_tail(log: Path | None, lines: int = 40) -> str:
    if log is None or not log.exists():
        return ""
    text = log.read_text(errors="replace").splitlines()[-lines:]
    return f"\n--- last lines of {log} ---\n" + "\n".join(text)


# --------------------------------------------------------------------------- memory
def children_of(pid: int) -> list[int]:
    """Direct children, from /proc (no psutil needed)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # The command name may hold spaces and parentheses: the ppid follows the last ')'.
        fields = stat.rsplit(")", 1)[1].split()
        if int(fields[1]) == pid:
            found.append(int(entry.name))
    return sorted(found)


def memory_mib(pid: int) -> dict[str, float]:
    """Resident set size now (psutil when installed, else VmRSS) and its peak (VmHWM), in MiB."""
    status: dict[str, float] = {}
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            key, _, rest = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                status[key] = int(rest.split()[0]) / 1024  # kB
    except OSError:
        pass
    rss = status.get("VmRSS", 0.0)
    try:
        import psutil  # type: ignore[import-not-found]
    except ImportError:
        pass
    else:
        with contextlib.suppress(Exception):
            rss = psutil.Process(pid).memory_info().rss / 2**20
    return {"rss_mib": rss, "peak_rss_mib": status.get("VmHWM", 0.0)}
