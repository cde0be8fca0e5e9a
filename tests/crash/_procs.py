"""Parent side of the crash tests: start a child script, wait for its marker file, SIGKILL it,
and launch torchrun. Loaded by the `procs` fixture; synchronisation is by marker files only."""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

CHILD = Path(__file__).with_name("_child.py")
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}
POLL_S = 0.005


@contextlib.contextmanager
def child(args: list[str | os.PathLike[str]], *, stderr: Path) -> Iterator[subprocess.Popen]:
    """Run `_child.py ARGS...` (stderr to a file); it never outlives the block."""
    with stderr.open("wb") as err:
        proc = subprocess.Popen([sys.executable, str(CHILD), *map(str, args)], stderr=err, env=ENV)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(60)


def wait_for(path: Path, proc: Any, *, stderr: Path, timeout: float = 120) -> None:
    """Wait until `path` exists; fail (with the child's stderr) if the child exits first."""
    deadline = time.monotonic() + timeout
    while not path.exists():
        if proc.poll() is not None:
            tail = stderr.read_text(errors="replace")[-3000:]
            raise AssertionError(f"child exited {proc.returncode} before {path.name}:\n{tail}")
        if time.monotonic() > deadline:
            raise AssertionError(f"child did not write {path} within {timeout} s")
        time.sleep(POLL_S)


class Forked:
    """A child forked by the zygote: `poll()` is None while it runs; `wait()` its exit code."""

    def __init__(self, zygote: Zygote, pid: int) -> None:
        self.zygote, self.pid = zygote, pid
        self.returncode: int | None = None

    def poll(self) -> int | None:
        try:
            os.kill(self.pid, 0)  # the zygote reaps it as soon as it exits
        except ProcessLookupError:
            return self.wait(60)
        return None

    def wait(self, timeout: float) -> int:
        if self.returncode is None:
            self.returncode = int(self.zygote.readline(timeout))
        return self.returncode

    def stop(self) -> None:
        """Make sure it is gone (after a failed check): kill it if it still runs."""
        if self.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGKILL)
            self.wait(60)


class Zygote:
    """`_child.py zygote`: forks the children of the kill loop (torch is imported once)."""

    def __init__(self, stderr: Path) -> None:
        with stderr.open("wb") as err:
            self.proc = subprocess.Popen(
                [sys.executable, str(CHILD), "zygote"],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                bufsize=0,  # unbuffered: select() sees every line not read yet
                stderr=err,
                env=ENV,
            )
        self.stderr = stderr

    def readline(self, timeout: float) -> str:
        assert self.proc.stdout is not None
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
        line = self.proc.stdout.readline() if ready else b""
        if not line:
            tail = self.stderr.read_text(errors="replace")[-3000:]
            raise AssertionError(f"the zygote did not answer within {timeout} s:\n{tail}")
        return line.decode()

    def fork(self, args: list[Any], *, stderr: Path) -> Forked:
        assert self.proc.stdin is not None
        self.proc.stdin.write((json.dumps([str(stderr), *map(str, args)]) + "\n").encode())
        self.proc.stdin.flush()
        return Forked(self, int(self.readline(120)))

    def close(self) -> None:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(b'"quit"\n')
        self.proc.stdin.flush()
        self.proc.stdin.close()
        try:
            assert self.proc.wait(60) == 0, f"the zygote exited {self.proc.returncode}"
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
            self.proc.stdout.close()


def sigkill(proc: Any) -> None:
    """kill -9, and check that it was the signal that ended the child."""
    os.kill(proc.pid, signal.SIGKILL)
    assert proc.wait(60) == -signal.SIGKILL, f"child ended with {proc.returncode}, not SIGKILL"


def torchrun(script: Path, args: list[str], *, nproc: int, timeout: float) -> None:
    """`torchrun --standalone` on 127.0.0.1 (gloo), as tests/dist does; fail on a nonzero exit."""
    env = ENV | {"GLOO_SOCKET_IFNAME": "lo", "TP_SOCKET_IFNAME": "lo", "MASTER_ADDR": "127.0.0.1"}
    argv = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
    argv += [f"--nproc_per_node={nproc}", "--local-addr=127.0.0.1", str(script), *args]
    done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-5000:]
