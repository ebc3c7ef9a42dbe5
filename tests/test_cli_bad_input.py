"""The ``zswap`` command never shows a traceback.

- Every option and argument of every command, found through the click command objects
  (so a new option cannot be forgotten), gets malformed numbers: nan, inf, huge, negative,
  empty, zero. Each gives either a normal run (only where the value makes sense) or one
  ``zswap: error: ...`` line and a non-zero exit. These run in-process (fast).
- ``--pid`` of a kernel thread, a zombie, or a process that exits while it is being read.
- SIGTERM during ``zswap run`` removes the temporary swap file, as Ctrl-C does.

A few end-to-end cases run the real command in a subprocess.
"""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import click
import pytest
from click.testing import CliRunner
from helpers import CLI_ENTRY as ENTRY
from helpers import subprocess_env

import zswap_core
from zswap_core.cli import _compare, cli, main
from zswap_core.workload import ProcessReader, ProcessSource, WorkloadError

LINUX = sys.platform.startswith("linux")
PF_KTHREAD = 0x00200000  # include/linux/sched.h

# -- running the command -------------------------------------------------------------------


def invoke(args: list[str]) -> tuple[int, str, str]:
    """``main(args)`` in this process, its output captured: (status, stdout, stderr).

    main() is what the ``zswap`` script runs, so its error handling is what is tested;
    an exception that escapes it fails the test as the traceback a user would see.
    """
    with CliRunner().isolation() as (out, err, _):
        rc = main(args)
    return rc, out.getvalue().decode(), err.getvalue().decode()


def zswap(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """The real command in a subprocess."""
    return subprocess.run(
        [sys.executable, "-m", "zswap_core.cli", *args],
        capture_output=True,
        text=True,
        env=env or subprocess_env(),
        timeout=120,
    )


def assert_one_line_error(rc: int, out: str, err: str, *needles: str) -> None:
    text = out + err
    assert "Traceback" not in text, text
    # the last-resort handler in main() must never be what answers bad input
    assert "internal error" not in text, text
    assert rc in (1, 2), (rc, text)
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("zswap: error: "), err
    for n in needles:
        assert n in lines[0], lines[0]


# -- every option of every command gets malformed numbers -------------------------------------

HUGE = str(10**30)
BAD_VALUES = ["nan", "inf", "-inf", "1e400", HUGE, "-1", "", "0", "0.0001"]
ALL = frozenset(BAD_VALUES)
FLAG = "flag"  # a flag takes no value: --json=VALUE is a usage error
# Kernel command lines pass words without a dot or '=' on to init, and so does ours.
BARE_WORDS = ALL - {"0.0001"}

# For each (command, parameter): which of BAD_VALUES are nonetheless valid. Everything
# else must fail with one line. A parameter missing here fails test_every_option_is_listed.
VALID: dict[tuple[str, str], frozenset[str] | str] = {
    ("", "version"): FLAG,
    ("run", "paths"): frozenset(),
    ("run", "pages"): frozenset(),
    ("run", "resident"): frozenset(),
    ("run", "accesses"): frozenset({"0"}),
    ("run", "alpha"): frozenset({"0", "0.0001"}),
    ("run", "writes"): frozenset({"0", "0.0001"}),
    ("run", "seed"): frozenset({"0"}),
    ("run", "source"): frozenset(),
    ("run", "files"): frozenset(),
    ("run", "pid"): frozenset(),
    ("run", "cmdline"): BARE_WORDS,
    ("run", "ram"): frozenset(),
    ("run", "sets"): frozenset(),
    ("run", "compact_every"): frozenset({"0"}),
    # a group name: "nan", "-1" or "0.0001" name a cgroup as well as any word; "" does not
    ("run", "group_specs"): ALL - {""},
    ("run", "async_writeback"): FLAG,
    ("run", "as_json"): FLAG,
    ("compare", "paths"): frozenset(),
    ("compare", "compressors"): frozenset(),
    ("compare", "zpools"): frozenset(),
    ("compare", "pages"): frozenset(),
    ("compare", "repeats"): frozenset(),
    ("compare", "jobs"): frozenset(),
    ("compare", "seed"): frozenset({"0"}),
    ("compare", "source"): frozenset(),
    ("compare", "files"): frozenset(),
    ("compare", "pid"): frozenset(),
    ("compare", "as_json"): FLAG,
    ("compare", "plot"): frozenset(),  # the format is the extension: none of these has one
    ("lsmod", "load"): FLAG,
    ("lsmod", "as_json"): FLAG,
    ("modinfo", "name"): frozenset(),
    ("modinfo", "as_json"): FLAG,
    ("params", "cmdline"): BARE_WORDS,
    ("params", "as_json"): FLAG,
    ("stats", "paths"): frozenset(),
    ("stats", "source"): frozenset(),
    ("stats", "files"): frozenset(),
    ("stats", "pid"): frozenset(),
    ("stats", "cmdline"): BARE_WORDS,
    ("stats", "pages"): frozenset(),
    ("stats", "seed"): frozenset({"0"}),
    ("stats", "all_classes"): FLAG,
    ("stats", "as_json"): FLAG,
    ("host", "as_json"): FLAG,
    ("host", "watch"): frozenset(),
    ("host", "count"): frozenset(),
    ("advise", "paths"): frozenset(),
    # a --pid that names no process is skipped (said in "skipped") when targets remain,
    # as a process that exits during a census is; 10**30 is such a pid
    ("advise", "pids"): frozenset({HUGE}),
    ("advise", "cgroups"): frozenset({""}),  # /sys/fs/cgroup itself: the root cgroup
    ("advise", "host"): FLAG,
    ("advise", "include_shmem"): FLAG,
    ("advise", "kernel"): frozenset(),
    ("advise", "sample"): frozenset(),
    ("advise", "seed"): frozenset({"0"}),
    ("advise", "confidence"): frozenset(),
    ("advise", "compressors"): frozenset(),
    ("advise", "zpools"): frozenset(),
    ("advise", "objective"): frozenset(),
    ("advise", "cpu_budget"): frozenset({"0.0001"}),
    ("advise", "max_pool_percent"): frozenset({"0.0001"}),
    ("advise", "ram"): frozenset(),
    ("advise", "group_specs"): ALL - {""},
    ("advise", "mark_idle"): FLAG,
    ("advise", "idle_interval"): frozenset(),
    ("advise", "jobs"): frozenset(),
    ("advise", "as_json"): FLAG,
    ("advise", "as_csv"): FLAG,
    ("advise", "plot"): frozenset(),  # no extension: png, svg or pdf
}

ADVISE_FILE = "pages.bin"
# Options that keep a valid run small; the option under test comes after them and wins.
BASE_OPTIONS = {
    "run": ["--pages", "16", "--accesses", "64"],
    "compare": ["--compressors", "lz4", "--zpools", "zbud", "--pages", "4", "--repeats", "1"],
    "stats": ["--pages", "8"],
    # a small file (written by the test) and one pair, in this process
    "advise": [
        "--kernel",
        "6.1",
        "--compressors",
        "lz4",
        "--zpools",
        "zbud",
        "--jobs",
        "1",
        "--ram",
        "1G",
        ADVISE_FILE,
    ],
}
BASE_ARGUMENTS = {"modinfo": ["lz4"]}


def all_params() -> Iterator[tuple[str, click.Parameter]]:
    """Every parameter of the group and of each command, from the click objects."""
    for p in cli.params:
        yield "", p
    assert isinstance(cli, click.Group)
    for name in sorted(cli.commands):
        for p in cli.commands[name].params:
            yield name, p


def command_line(command: str, param: click.Parameter, value: str) -> list[str]:
    head = [command] if command else []
    opts = BASE_OPTIONS.get(command, [])
    if isinstance(param, click.Argument):
        # after "--" so that "-1" and "-inf" are values, not options
        return [*head, *opts, "--", value]
    name = max(param.opts, key=len)
    # --opt=VALUE: an empty value stays a value, and "-1" cannot be read as an option
    return [*head, *opts, f"{name}={value}", *BASE_ARGUMENTS.get(command, [])]


CASES = [
    pytest.param(cmd, p, v, id=f"{cmd or 'zswap'}-{p.name}-{v or 'empty'}")
    for cmd, p in all_params()
    for v in BAD_VALUES
]


def test_every_option_is_listed() -> None:
    found = {(cmd, p.name) for cmd, p in all_params()}
    assert found == set(VALID), (
        f"unlisted: {sorted(found - set(VALID))}; gone: {sorted(set(VALID) - found)}"
    )
    assert len(found) >= 30  # the walk really saw the commands' options


@pytest.mark.parametrize(("command", "param", "value"), CASES)
def test_malformed_numbers_never_give_a_traceback(
    command: str,
    param: click.Parameter,
    value: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(tmp_path)  # file names such as "nan" resolve here, and plots land here
    (tmp_path / ADVISE_FILE).write_bytes(b"zswap advise, a few pages. " * 600)
    if (command, param.name) == ("compare", "plot"):
        # Only the name matters here; drawing (a second each) is test_cli_compare's.
        monkeypatch.setattr(_compare, "_plot", lambda results, path, title: Path(path).touch())
    rc, out, err = invoke(command_line(command, param, value))
    valid = VALID[(command, str(param.name))]
    if valid != FLAG and value in valid:
        assert rc == 0, err
        assert "Traceback" not in out + err and "zswap: error" not in err, err
    else:
        assert_one_line_error(rc, out, err)


@pytest.mark.parametrize("value", ["nan", "inf", "1e400", "0.0001"])
def test_ram_that_is_not_a_size_end_to_end(value: str) -> None:
    r = zswap("run", "--pages", "16", "--accesses", "16", "--ram", value)
    assert_one_line_error(r.returncode, r.stdout, r.stderr, "--ram")


@pytest.mark.parametrize(
    ("value", "needle"),
    [
        ("nan", "not a finite number"),
        ("inf", "not a finite number"),
        ("1e400", "at most"),
        (HUGE, "at most"),
        ("0.0001", "at least one page"),
        ("2K", "at least one page"),
        ("-1", "positive"),
        ("", "bad size"),
        ("lots", "bad size"),
    ],
)
def test_ram_messages(value: str, needle: str) -> None:
    rc, out, err = invoke(["run", "--pages", "16", "--accesses", "16", f"--ram={value}"])
    assert_one_line_error(rc, out, err, "--ram", needle)


def test_ram_of_one_page_and_of_big_machines_is_accepted() -> None:
    for value in ("4096", "4K", "1.5G", "64MiB", "1P"):
        rc, _, err = invoke(["run", "--pages", "16", "--accesses", "16", "--ram", value])
        assert rc == 0, (value, err)


def test_a_plugin_option_that_fails_to_load_is_an_error_in_params() -> None:
    # `zswap params` lists the modules named in --cmdline; one that cannot load with the
    # given option must not silently vanish from the list. (Subprocess: the boot options
    # would otherwise stay in this process's registry.)
    r = zswap("params", "--cmdline", "zstd.level=1e400")
    assert_one_line_error(r.returncode, r.stdout, r.stderr, "zstd", "level")


def test_an_environment_that_refuses_is_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    # A full disk where the swap file goes: an OSError, told as one line, not a traceback.
    def full(*args: object, **kw: object) -> str:
        raise OSError(errno.ENOSPC, "No space left on device", "/tmp/zswap-run-x")

    monkeypatch.setattr(tempfile, "mkdtemp", full)
    rc, out, err = invoke(["run", "--pages", "16", "--accesses", "16"])
    assert_one_line_error(rc, out, err)
    assert rc == 1 and err == "zswap: error: /tmp/zswap-run-x: No space left on device\n"


def test_a_bug_is_one_line_unless_debugging(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*args: object, **kw: object) -> None:
        raise RuntimeError("boom\nsecond line")

    monkeypatch.setattr(zswap_core, "list_plugins", broken)
    rc, out, err = invoke(["lsmod"])
    assert rc == 1 and "Traceback" not in out + err
    assert err == (
        "zswap: internal error: RuntimeError: boom second line "
        "(a bug; ZSWAP_DEBUG=1 shows the traceback)\n"
    )
    monkeypatch.setenv("ZSWAP_DEBUG", "1")
    with pytest.raises(RuntimeError, match="boom"):
        invoke(["lsmod"])


# -- --pid of processes with no user memory ---------------------------------------------------


def is_kernel_thread(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return bool(int(stat.rpartition(")")[2].split()[6]) & PF_KTHREAD)


def a_kernel_thread() -> int | None:
    """pid 2 (kthreadd) if it is one, as on a host; else any kernel thread in sight."""
    if is_kernel_thread(2):
        return 2
    for entry in sorted(Path("/proc").iterdir(), key=lambda p: p.name):
        if entry.name.isdigit() and is_kernel_thread(int(entry.name)):
            return int(entry.name)
    return None  # in a PID namespace kernel threads are not visible


@pytest.mark.skipif(not LINUX, reason="needs /proc")
def test_pid_of_a_kernel_thread_end_to_end() -> None:
    pid = a_kernel_thread()
    if pid is None:
        pytest.skip("no kernel thread is visible in this PID namespace")
    r = zswap("run", "--pid", str(pid))
    assert_one_line_error(r.returncode, r.stdout, r.stderr)
    assert r.returncode == 1
    assert r.stderr == f"zswap: error: pid {pid} is a kernel thread: no user memory\n"


def test_pid_of_a_kernel_thread_in_a_fake_proc(tmp_path: Path) -> None:
    # The same check without a visible kernel thread: /proc/2/stat as a host shows it.
    (tmp_path / "2").mkdir()
    (tmp_path / "2" / "stat").write_text(
        "2 (kthreadd) S 0 0 0 0 -1 2129984 0 0 0 0 0 0 0 0 20 0 1 0 14 0 0 "
        "18446744073709551615 0 0 0 0 0 0 0 2147483647 0 1 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0\n"
    )
    with pytest.raises(WorkloadError) as info:
        ProcessSource(2, proc=str(tmp_path))
    assert str(info.value) == "pid 2 is a kernel thread: no user memory"


@pytest.fixture
def zombie() -> Iterator[int]:
    """A child that has exited and is not reaped: a zombie until the test ends."""
    proc = subprocess.Popen([sys.executable, "-c", ""])
    try:
        # WNOWAIT: wait until it has exited, but leave it unreaped, so it is surely a zombie
        os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOWAIT)
        yield proc.pid
    finally:
        proc.wait()


@pytest.mark.skipif(not LINUX, reason="needs /proc")
def test_pid_of_a_zombie(zombie: int) -> None:
    assert Path(f"/proc/{zombie}/stat").read_text().rpartition(")")[2].split()[0] == "Z"
    with pytest.raises(WorkloadError, match=f"^pid {zombie} is a zombie"):
        ProcessSource(zombie)
    rc, out, err = invoke(["run", "--pid", str(zombie)])
    assert_one_line_error(rc, out, err, f"pid {zombie} is a zombie", "no user memory")
    assert rc == 1


CHILD = (
    "import time\n"
    "buf = bytearray(b'zswap-bad-input' * (1 << 16))\n"
    "print('ready', flush=True)\n"
    "time.sleep(120)\n"
)


@pytest.fixture
def child() -> Iterator[subprocess.Popen[bytes]]:
    proc = subprocess.Popen([sys.executable, "-c", CHILD], stdout=subprocess.PIPE)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == b"ready"
        yield proc
    finally:
        proc.kill()
        proc.wait()


def kill_and_wait_for_exit(proc: subprocess.Popen[bytes]) -> None:
    """SIGKILL, then wait until it has exited (its memory is gone), without reaping it."""
    proc.kill()
    os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOWAIT)


@pytest.mark.skipif(not LINUX, reason="needs /proc")
def test_process_that_exits_while_being_read_step_by_step(
    child: subprocess.Popen[bytes],
) -> None:
    reader = ProcessReader(child.pid)
    # A Python process has a heap, a stack and anonymous mappings: there is a next one
    # to read after the first, so the exit below always falls in the middle of the read.
    assert len(reader.regions) >= 2
    batches = iter(reader)
    next(batches)
    kill_and_wait_for_exit(child)
    with pytest.raises(WorkloadError) as info:
        for _ in batches:
            pass
    assert str(info.value) == f"pid {child.pid} exited while being read"


@pytest.mark.skipif(not LINUX, reason="needs /proc")
def test_process_that_exits_while_being_read_by_the_command(
    child: subprocess.Popen[bytes], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Kill the child right after the first read of its memory, at the os level, so the
    # reader is caught at a known point whatever its structure.
    mem_fds: set[int] = set()
    real_open, real_pread = os.open, os.pread

    def open_(path: str, *args: int, **kw: int) -> int:
        fd = real_open(path, *args, **kw)
        if str(path) == f"/proc/{child.pid}/mem":
            mem_fds.add(fd)
        return fd

    def pread(fd: int, n: int, offset: int) -> bytes:
        data = real_pread(fd, n, offset)
        if fd in mem_fds and child.returncode is None and data:
            kill_and_wait_for_exit(child)
            child.returncode = -9  # this is now a zombie; the fixture reaps it
        return data

    monkeypatch.setattr(os, "open", open_)
    monkeypatch.setattr(os, "pread", pread)
    rc, out, err = invoke(["run", "--pid", str(child.pid), "--pages", "4096"])
    assert child.returncode == -9, "the child was never read"
    assert_one_line_error(rc, out, err)
    assert rc == 1
    assert err == f"zswap: error: pid {child.pid} exited while being read\n"


# -- signals during `zswap run` ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("sig", "status", "message"),
    [
        (signal.SIGTERM, 128 + signal.SIGTERM, "zswap: terminated (SIGTERM)"),
        (signal.SIGINT, 130, "zswap: interrupted"),
    ],
    ids=["SIGTERM", "SIGINT"],
)
def test_a_signal_during_run_removes_the_swap_file(
    tmp_path: Path, sig: signal.Signals, status: int, message: str
) -> None:
    env = {**subprocess_env(), "TMPDIR": str(tmp_path)}
    # 2**40 accesses: the run is still going, whenever the signal comes
    args = ["run", "--pages", "512", "--accesses", str(1 << 40)]
    proc = subprocess.Popen(
        [sys.executable, "-c", ENTRY, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        deadline = time.monotonic() + 60
        while not list(tmp_path.glob("zswap-run-*/swapfile")):
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "no swap file after 60 s"
            time.sleep(0.01)
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert "Traceback" not in err, err
    assert err.splitlines() == [message], err
    assert proc.returncode == status
    assert list(tmp_path.iterdir()) == []
    if sig == signal.SIGINT:  # Ctrl-C: the report so far; SIGTERM: none
        assert "(interrupted: the figures are those of the run so far)" in out
    else:
        assert out == ""
