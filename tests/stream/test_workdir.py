"""Work folders go away: on exit, exception and Ctrl-C in the owner, and after a kill at the
next `WorkDir` in the same parent; never a live process's, never from a forked worker."""

from __future__ import annotations

import gc
import json
import os
import pickle
import select
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from seta_stream.workdir import OWNER, WorkDir, remove_dead

TIMEOUT = 60  # seconds any child may take; a bound, not an expectation

# A child that holds a WorkDir in argv[1], prints its path, then runs the rest of its code.
PRELUDE = """\
import os, signal, sys, time
signal.signal(signal.SIGINT, signal.default_int_handler)  # as at an interactive terminal
from seta_stream.workdir import WorkDir
wd = WorkDir(sys.argv[1])
print(wd.path, flush=True)
"""


class Children:
    """Starts children and kills any still running at the end of the test."""

    def __init__(self) -> None:
        self.procs: list[subprocess.Popen[str]] = []

    def start(self, code: str, *args: str, prelude: str = PRELUDE) -> subprocess.Popen[str]:
        argv = [sys.executable, "-c", prelude + code, *args]
        proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self.procs.append(proc)
        return proc

    def holding(self, code: str, parent: Path) -> tuple[subprocess.Popen[str], Path]:
        """A child that created a WorkDir in `parent` and runs `code`; and the folder."""
        proc = self.start(code, str(parent))
        assert proc.stdout is not None
        ready, _, _ = select.select([proc.stdout], [], [], TIMEOUT)
        assert ready, f"the child did not report its folder within {TIMEOUT} s"
        path = Path(proc.stdout.readline().strip())
        assert path.parent == parent
        return proc, path

    def close(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
            proc.wait(timeout=TIMEOUT)
            for pipe in (proc.stdin, proc.stdout):
                if pipe is not None:
                    pipe.close()


@pytest.fixture
def children() -> Iterator[Children]:
    c = Children()
    try:
        yield c
    finally:
        c.close()


def _wait(proc: subprocess.Popen[str]) -> int:
    proc.communicate(timeout=TIMEOUT)
    return proc.returncode


def _folders(parent: Path) -> list[Path]:
    return sorted(parent.glob("seta_stream-*"))


def test_owner_file_names_this_process(tmp_path: Path) -> None:
    wd = WorkDir(str(tmp_path))
    owner = json.loads((Path(wd.path) / OWNER).read_text())
    assert owner["pid"] == os.getpid() and owner["version"] == 1
    with open(f"/proc/{os.getpid()}/stat") as f:
        assert owner["start"] == f.read().rsplit(")", 1)[1].split()[19]
    wd.remove()
    wd.remove()  # idempotent
    assert _folders(tmp_path) == []


def test_normal_exit_removes_the_folder(tmp_path: Path, children: Children) -> None:
    proc, path = children.holding("", tmp_path)  # exits without remove()
    assert _wait(proc) == 0
    assert not path.exists()


def test_exception_removes_the_folder(tmp_path: Path, children: Children) -> None:
    proc, path = children.holding("raise RuntimeError('boom')", tmp_path)
    assert _wait(proc) == 1
    assert not path.exists()


def test_ctrl_c_removes_the_folder(tmp_path: Path, children: Children) -> None:
    proc, path = children.holding(f"time.sleep({TIMEOUT})", tmp_path)
    assert json.loads((path / OWNER).read_text())["pid"] == proc.pid
    proc.send_signal(signal.SIGINT)
    assert _wait(proc) == -signal.SIGINT  # the KeyboardInterrupt unwound to the top
    assert not path.exists()


def test_killed_owner_folder_is_removed_by_the_next_workdir(
    tmp_path: Path, children: Children
) -> None:
    proc, path = children.holding(f"time.sleep({TIMEOUT})", tmp_path)
    proc.kill()
    assert _wait(proc) == -signal.SIGKILL
    assert path.is_dir()  # nothing ran in the killed process
    wd = WorkDir(str(tmp_path))
    assert _folders(tmp_path) == [Path(wd.path)]
    wd.remove()


def test_live_owner_folder_survives_other_starts(tmp_path: Path, children: Children) -> None:
    live, path = children.holding(f"time.sleep({TIMEOUT})", tmp_path)
    other, other_path = children.holding("", tmp_path)  # starts (sweeps) and exits
    assert _wait(other) == 0 and not other_path.exists()
    WorkDir(str(tmp_path)).remove()
    assert remove_dead(str(tmp_path)) == []
    assert _folders(tmp_path) == [path] and (path / "counters.npy").is_file()
    live.send_signal(signal.SIGINT)
    _wait(live)
    assert not path.exists()


@pytest.mark.parametrize("how", ["os.fork", "multiprocessing"])
def test_forked_child_never_removes_the_folder(
    tmp_path: Path, children: Children, how: str
) -> None:
    # The child calls remove() and exits: os.fork's through the interpreter's exit (atexit
    # runs the inherited finalizer), multiprocessing's after dropping the WorkDir (the
    # finalizer runs at collection). The parent then says whether the folder is still there,
    # and exits normally, which removes it.
    code = """
import gc, multiprocessing
def child():
    global wd
    wd.remove()
    if sys.argv[2] != "os.fork":
        del wd
        gc.collect()
if sys.argv[2] == "os.fork":
    pid = os.fork()
    if pid == 0:
        child()
        sys.exit(0)  # a normal interpreter exit: atexit hooks (the finalizers) run
    _, status = os.waitpid(pid, 0)
    code = os.waitstatus_to_exitcode(status)
else:
    p = multiprocessing.get_context("fork").Process(target=child)
    p.start()
    p.join()
    code = p.exitcode
print(code, os.path.isdir(wd.path), flush=True)
"""
    proc = children.start(code, str(tmp_path), how)
    out, _ = proc.communicate(timeout=TIMEOUT)
    path, line = out.splitlines()
    assert line == "0 True"  # the child exited cleanly and the folder was still there
    assert proc.returncode == 0 and not Path(path).exists()


def _fake_folder(parent: Path, name: str, owner: dict[str, object] | None) -> Path:
    path = parent / name
    path.mkdir()
    (path / "counters.npy").write_bytes(b"x" * 100)
    if owner is not None:
        (path / OWNER).write_text(json.dumps(owner))
    return path


def test_reused_pid_is_not_the_owner(tmp_path: Path) -> None:
    wd = WorkDir(str(tmp_path))
    me = json.loads((Path(wd.path) / OWNER).read_text())
    wd.remove()
    alive = _fake_folder(tmp_path, "seta_stream-alive___", me)
    reused = _fake_folder(tmp_path, "seta_stream-reused__", {**me, "start": "1"})
    assert remove_dead(str(tmp_path)) == [str(reused)]
    assert _folders(tmp_path) == [alive]


def test_folders_without_owner_file(tmp_path: Path) -> None:
    young = _fake_folder(tmp_path, "seta_stream-young___", None)
    old = _fake_folder(tmp_path, "seta_stream-old_____", None)  # left by an older version
    empty = tmp_path / "seta_stream-empty___"
    empty.mkdir()
    foreign = tmp_path / "seta_stream-datasets"  # an 8-letter name, but not a WorkDir's
    (foreign / "sub").mkdir(parents=True)
    other = _fake_folder(tmp_path, "seta_stream-not-mkdtemp-name", None)
    two_hours_ago = time.time() - 7200
    for p in (old, old / "counters.npy", empty, foreign, foreign / "sub", other):
        os.utime(p, (two_hours_ago, two_hours_ago))
    assert sorted(remove_dead(str(tmp_path))) == [str(empty), str(old)]
    assert _folders(tmp_path) == sorted([foreign, other, young])


def test_a_copy_does_not_remove_the_folder_when_collected(tmp_path: Path) -> None:
    wd = WorkDir(str(tmp_path))
    copy = pickle.loads(pickle.dumps(wd))  # what a spawned DataLoader worker gets
    assert copy.path == wd.path
    del copy
    gc.collect()
    assert Path(wd.path).is_dir()
    path = wd.path
    del wd
    gc.collect()
    assert not os.path.exists(path)  # the owner's own object is collected: gone


def test_concurrent_sweeps_do_not_crash(tmp_path: Path, children: Children) -> None:
    wd = WorkDir(str(tmp_path))
    dead = {**json.loads((Path(wd.path) / OWNER).read_text()), "start": "1"}
    wd.remove()
    for i in range(40):
        folder = _fake_folder(tmp_path, f"seta_stream-dead{i:04d}", dead)
        for j in range(20):
            (folder / f"epoch-{j:06d}.order.npy").write_bytes(b"y" * 100)
    code = """
import sys
from seta_stream.workdir import remove_dead
sys.stdin.readline()  # both start sweeping together
print(len(remove_dead(sys.argv[1])), flush=True)
"""
    procs = [children.start(code, str(tmp_path), prelude="") for _ in range(2)]
    for proc in procs:
        assert proc.stdin is not None
        proc.stdin.write("go\n")
        proc.stdin.flush()
    counts = [int(proc.communicate(timeout=TIMEOUT)[0]) for proc in procs]
    assert [proc.returncode for proc in procs] == [0, 0]
    # A folder one claimed may be finished by the other as well: each counts it.
    assert sum(counts) >= 40 and _folders(tmp_path) == []
