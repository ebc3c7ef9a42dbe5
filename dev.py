#!/usr/bin/env python3
"""Set up a development environment and run the project: ``python3 dev.py run|test|setup``.

Needs only Python 3.11+ and pip. It creates ``.venv``, installs the core and every
plugin in editable mode with one pip command (pip satisfies each plugin's
``zswap-core`` requirement from the local path given in the same command), installs
the system's codec headers when it can (python-lzo builds from source) and Debian's
redis-server and redis-tools (the advise tests on real software start a redis-server),
and then runs the command. Safe to run again: set-up is skipped while nothing it depends on changed.

    python3 dev.py run [zswap run options]   # the main job: `zswap run`
    python3 dev.py test [pytest options]     # ruff, mypy --strict, and every test
    python3 dev.py test --sanitize[=address|thread] [--quick] [pytest options]
                                             # the C code under ASan+UBSan (or TSan)
    python3 dev.py test --valgrind [pytest options]  # the C code under valgrind memcheck
    python3 dev.py wheels [--out DIR]        # sdist + wheel of the core and every plugin

The C extensions (the core's native backend, zsmalloc) are rebuilt in place whenever
one of their .c or .h files changes; that needs gcc and the Python headers only.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
BIN = VENV / "bin"
PY = BIN / "python"
STAMP = VENV / ".zswap-setup"

#: Workspace members, installed together; the lzo plugin only where liblzo2 headers exist.
MEMBERS = [
    ".",
    "plugins/compressors/lz4",
    "plugins/compressors/zstd",
    "plugins/compressors/deflate",
    "plugins/compressors/lzo",
    "plugins/zpools/zbud",
    "plugins/zpools/z3fold",
    "plugins/zpools/zsmalloc",
]
LZO_HEADER = Path("/usr/include/lzo/lzo1x.h")
#: Debian packages with the headers the codec plugins build against.
SYSTEM_HEADERS = {
    "liblzo2-dev": str(LZO_HEADER),
    "liblz4-dev": "/usr/include/lz4.h",
    "libzstd-dev": "/usr/include/zstd.h",
    "zlib1g-dev": "/usr/include/zlib.h",
}
#: Debian packages of the real software the advise tests start (tests/realproc/), and
#: the program each provides.
SYSTEM_PROGRAMS = {
    "redis-server": "redis-server",
    "redis-tools": "redis-benchmark",
}

#: Members with a C extension, built in place next to their sources (their editable
#: installs import it from there).
NATIVE = [
    ".",
    "plugins/zpools/zsmalloc",
    "plugins/compressors/lz4",
    "plugins/compressors/zstd",
    "plugins/compressors/lzo",
    "plugins/compressors/deflate",
]
#: Sanitizer builds: compiler flags, the runtime to preload into Python (which is not
#: built with it), and the runtime's options.
SANITIZERS: dict[str, tuple[str, str, dict[str, str]]] = {
    "address": (
        "-fsanitize=address,undefined -fno-sanitize-recover=undefined"
        " -fno-omit-frame-pointer -g -O1",
        "libasan.so",
        {
            # CPython's own allocations look leaked at exit: leaks are not what this finds
            "ASAN_OPTIONS": "detect_leaks=0:abort_on_error=1",
            "UBSAN_OPTIONS": "print_stacktrace=1:halt_on_error=1",
        },
    ),
    "thread": (
        "-fsanitize=thread -fno-omit-frame-pointer -g -O1",
        "libtsan.so",
        {"TSAN_OPTIONS": "halt_on_error=1:report_signal_unsafe=0"},
    ),
}
#: What `test --sanitize/--valgrind` runs: the core, zsmalloc and codec tests that
#: reach C, the differential state machine, the fuzz target and the GIL-free paths.
#: `--quick` (CI) takes the C-specific files only: under ThreadSanitizer, the ones
#: where threads run C at once.
NATIVE_TESTS = [
    "tests/test_native_core.py",
    "tests/test_native_fuzz.py",
    "tests/test_native_nogil.py",
    "tests/test_native_threads.py",
    "tests/test_backend_differential.py",
    "tests/test_zswap_core.py",
    "tests/test_writeback.py",
    "tests/test_faults.py",
    "tests/test_reliability_core.py",
    "tests/test_memcg.py",
    "tests/test_shrinker.py",
    "tests/test_shared_zpool.py",
    "plugins/zpools/zsmalloc/tests",
    "plugins/compressors/lz4/tests",
    "plugins/compressors/zstd/tests",
    "plugins/compressors/lzo/tests",
    "plugins/compressors/deflate/tests",
]
NATIVE_TESTS_QUICK = {
    "address": [
        "tests/test_native_core.py",
        "tests/test_native_fuzz.py",
        "tests/test_native_nogil.py",
        "tests/test_native_threads.py",
        "tests/test_backend_differential.py",
        "tests/test_memcg.py",
        "plugins/zpools/zsmalloc/tests/test_zsmalloc_native.py",
        "plugins/zpools/zsmalloc/tests/test_zsmalloc_threads.py",
        "plugins/compressors/lz4/tests",
        "plugins/compressors/zstd/tests",
        "plugins/compressors/deflate/tests",
    ],
    "thread": [
        "tests/test_native_nogil.py",
        "tests/test_native_threads.py",
        "tests/test_memcg.py::test_threads_keep_charges_exact[native]",
        "plugins/zpools/zsmalloc/tests/test_zsmalloc_native.py",
        "plugins/zpools/zsmalloc/tests/test_zsmalloc_threads.py",
        "tests/test_codec_ops_plugins.py",
    ],
}


def say(msg: str) -> None:
    print(f"[dev.py] {msg}", file=sys.stderr, flush=True)


def run(cmd: list[str], **kw: object) -> None:
    subprocess.run(cmd, check=True, **kw)  # type: ignore[call-overload]


def apt_install(missing: list[str], why: str) -> None:
    """Install Debian packages with apt-get, as root or through password-less sudo.

    Says why when it cannot (no apt-get, not root and no sudo, apt-get failed); the
    caller checks afterwards what is there.
    """
    apt = shutil.which("apt-get")
    prefix: list[str] = []
    if apt is None:
        say(f"no apt-get: {', '.join(missing)} not installed ({why})")
        return
    if os.geteuid() != 0:
        sudo = shutil.which("sudo")
        if sudo is None or subprocess.run([sudo, "-n", "true"], capture_output=True).returncode:
            say(f"not root and no password-less sudo: {', '.join(missing)} not installed")
            return
        prefix = [sudo, "-n"]
    say(f"installing {' '.join(missing)} ({why})")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    try:
        run([*prefix, apt, "-qq", "update"], env=env, stdout=subprocess.DEVNULL)
        run([*prefix, apt, "-qq", "install", "-y", *missing], env=env, stdout=subprocess.DEVNULL)
    except subprocess.CalledProcessError:
        say(f"could not install {' '.join(missing)}")


def ensure_system_headers() -> bool:
    """Install the codec libraries' headers that are missing; True when LZO's exist.

    python-lzo has no wheel for this platform and builds against liblzo2; the C codec
    ops of the compressor plugins link the system's liblz4, libzstd, liblzo2 and zlib.
    A plugin whose headers stay missing installs without its ops (Python path only).
    """
    missing = [pkg for pkg, header in SYSTEM_HEADERS.items() if not Path(header).exists()]
    if missing:
        apt_install(missing, "the codec plugins build against them")
    if not LZO_HEADER.exists():
        say("no liblzo2 headers: the lzo plugin is skipped")
        return False
    return True


def ensure_redis() -> bool:
    """Install Debian's redis-server and redis-tools when missing; True when both run.

    The advise tests on real software (tests/realproc/) start a redis-server of their
    own on 127.0.0.1 and load it with redis-benchmark. Without them those tests skip,
    except in CI (CI=true), where they fail.
    """
    missing = [pkg for pkg, prog in SYSTEM_PROGRAMS.items() if shutil.which(prog) is None]
    if missing:
        apt_install(missing, "the advise tests on real software start a redis-server")
    return all(shutil.which(prog) is not None for prog in SYSTEM_PROGRAMS.values())


def fingerprint(members: list[str]) -> str:
    h = hashlib.sha256()
    for m in members:
        h.update(m.encode())
        h.update((ROOT / m / "pyproject.toml").read_bytes())
    h.update((ROOT / "requirements-dev.txt").read_bytes())
    h.update(sys.version.encode())
    return h.hexdigest()


def setup() -> None:
    have_lzo = ensure_system_headers()
    ensure_redis()
    members = [m for m in MEMBERS if (ROOT / m / "pyproject.toml").exists()]
    if not have_lzo:
        members = [m for m in members if not m.endswith("/lzo")]
    want = fingerprint(members)
    if PY.exists() and STAMP.exists() and STAMP.read_text() == want:
        return
    if not PY.exists():
        say(f"creating {VENV}")
        venv.EnvBuilder(with_pip=True, clear=True).create(VENV)
    say("installing the core, the plugins and the dev tools")
    pip = [str(PY), "-m", "pip", "--disable-pip-version-check", "-q"]
    run([*pip, "install", "--upgrade", "pip"])
    editable = [arg for m in members for arg in ("-e", str(ROOT / m))]
    run([*pip, "install", *editable, "-r", str(ROOT / "requirements-dev.txt")])
    STAMP.write_text(want)


def native_sources(member: str, root: Path = ROOT) -> list[Path]:
    """Every .c and .h file of a member (its build and venv folders aside)."""
    base = root / member
    found = [p for ext in ("*.c", "*.h") for p in base.rglob(ext)]
    return sorted(p for p in found if not {".venv", "build"} & set(p.relative_to(base).parts))


def native_fingerprint(member: str, flavour: str, root: Path = ROOT) -> str:
    """What a build of ``member`` depends on: its C sources, the flavour, the Python."""
    h = hashlib.sha256(f"{flavour} {sys.version}".encode())
    for path in native_sources(member, root):
        h.update(str(path.relative_to(root / member)).encode())
        h.update(path.read_bytes())
    return h.hexdigest()


def build_native(flavour: str = "release") -> None:
    """Rebuild each C extension in place when a source or the build flavour changed.

    The extensions are optional: a failed release build leaves the Python backend,
    and the test suite says which backend ran. A sanitizer build must succeed.
    """
    for member in NATIVE:
        if not native_sources(member):
            continue
        want = native_fingerprint(member, flavour)
        stamp = ROOT / member / "build" / ".zswap-native"
        if stamp.exists() and stamp.read_text() == want:
            continue
        say(f"building the C extension of {member} ({flavour})")
        e = env()
        flags = SANITIZERS[flavour][0] if flavour in SANITIZERS else ""
        if flavour == "debug":  # for valgrind: symbols, little inlining
            flags = "-g -O1 -fno-omit-frame-pointer"
        if flags:
            e["CFLAGS"] = flags
            e["LDFLAGS"] = flags
        cmd = [str(PY), "setup.py", "-q", "build_ext", "--inplace", "--force"]
        proc = subprocess.run(cmd, cwd=ROOT / member, env=e, capture_output=True, text=True)
        if proc.returncode != 0 or (flavour != "release" and "error" in proc.stderr.lower()):
            sys.stderr.write(proc.stdout + proc.stderr)
            if flavour != "release":
                raise SystemExit(f"[dev.py] the {flavour} build of {member} failed")
            say(f"the C extension of {member} did not build: its Python code runs instead")
        stamp.parent.mkdir(exist_ok=True)
        stamp.write_text(want)


def checked_tests(rest: list[str]) -> int:
    """``test --sanitize[=kind]`` / ``test --valgrind``: the C code under a checker."""
    quick = "--quick" in rest
    rest = [a for a in rest if a != "--quick"]
    mode = rest.pop(0)
    kind = mode.partition("=")[2] or "address"
    tests = NATIVE_TESTS_QUICK.get(kind, NATIVE_TESTS_QUICK["address"]) if quick else NATIVE_TESTS
    tests = [t for t in tests if (ROOT / t.partition("::")[0]).exists()]
    e = env()
    e["ZSWAP_BACKEND"] = "native"
    e["ZSWAP_CHECKER"] = mode.lstrip("-")  # timing checks stand down under a checker
    pytest = [str(PY), "-m", "pytest", "-q", "-p", "no:cacheprovider", *tests, *rest]
    if mode == "--valgrind":
        build_native("debug")
        e["PYTHONMALLOC"] = "malloc"  # so that valgrind sees every allocation
        valgrind = shutil.which("valgrind")
        if valgrind is None:
            say("valgrind is not installed (apt-get install valgrind)")
            return 2
        cmd = [valgrind, "--error-exitcode=99", "--errors-for-leak-kinds=none", "-q", *pytest]
    else:
        if kind not in SANITIZERS:
            say(f"--sanitize={kind}: expected one of {', '.join(SANITIZERS)}")
            return 2
        build_native(kind)
        _flags, runtime, options = SANITIZERS[kind]
        lib = subprocess.run(
            ["gcc", f"-print-file-name={runtime}"], capture_output=True, text=True
        ).stdout.strip()
        e["LD_PRELOAD"] = lib
        # pytest captures the tests' stderr, where a report would be lost with the
        # aborted process: the runtimes write to files here instead, shown after.
        logs = Path(tempfile.mkdtemp(prefix="zswap-sanitizer-"))
        for key, value in options.items():
            e[key] = f"{value}:log_path={logs / key.split('_')[0].lower()}"
        cmd = pytest
    say(f"$ {' '.join(cmd)}  ({mode}: the C extensions are rebuilt normally on the next run)")
    rc = subprocess.run(cmd, cwd=ROOT, env=e).returncode
    if mode != "--valgrind":
        reports = sorted(logs.iterdir())
        for report in reports:
            say(f"{report.name}:")
            sys.stderr.write(report.read_text(errors="replace"))
        shutil.rmtree(logs, ignore_errors=True)
        if reports and rc == 0:
            rc = 1  # a report is a failure even when no test saw it
    return rc


def wheels(rest: list[str]) -> int:
    """Build the sdist of the core and of every bundled plugin, and a wheel from each sdist.

    Wheels built from the sdists prove that the sdists are complete. This is how a
    plugin author gets the core without the package index (CONTRIBUTING.md).
    """
    out = ROOT / "dist"
    if rest[:1] == ["--out"] and len(rest) == 2:
        out = Path(rest[1]).resolve()
    elif rest:
        say("usage: python3 dev.py wheels [--out DIR]")
        return 2
    out.mkdir(parents=True, exist_ok=True)
    for member in MEMBERS:
        src = ROOT / member
        say(f"building {src.relative_to(ROOT.parent)} -> {out}")
        # --no-isolation: hatchling is in the dev tools, so nothing is downloaded here
        cmd = [str(PY), "-m", "build", "--no-isolation", "--outdir", str(out), str(src)]
        proc = subprocess.run(cmd, env=env(), capture_output=True, text=True)
        if proc.returncode != 0:
            sys.stderr.write(proc.stdout + proc.stderr)
            say(f"failed: {' '.join(cmd)} (exit {proc.returncode})")
            return proc.returncode
    for path in sorted(out.iterdir()):
        print(path)
    return 0


def backend_line() -> str:
    """Which backend the tests will run by default, from the venv's own import."""
    probe = (
        "from zswap_core._backend import NATIVE_ERROR as e; "
        "print('native (C extension built)' if e is None else 'python: ' + e)"
    )
    proc = subprocess.run([str(PY), "-c", probe], capture_output=True, text=True, env=env())
    return (proc.stdout or proc.stderr).strip()


def env() -> dict[str, str]:
    out = dict(os.environ)
    out["PATH"] = f"{BIN}{os.pathsep}{out.get('PATH', '')}"
    out["VIRTUAL_ENV"] = str(VENV)
    out.pop("PYTHONHOME", None)
    return out


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in ("run", "test", "setup", "bench", "wheels"):
        print(__doc__)
        return 2
    cmd, rest = argv[0], argv[1:]
    setup()
    if cmd == "test" and rest and (rest[0].startswith("--sanitize") or rest[0] == "--valgrind"):
        return checked_tests(rest)
    build_native()
    if cmd == "setup":
        return 0
    if cmd == "run":
        return subprocess.run([str(BIN / "zswap"), "run", *rest], env=env()).returncode
    if cmd == "wheels":
        return wheels(rest)
    if cmd == "bench":
        return subprocess.run(
            [str(PY), str(ROOT / "benchmarks" / "run.py"), *rest], env=env()
        ).returncode
    say(f"backend: {backend_line()}")
    steps = [
        ["ruff", "check", "."],
        ["ruff", "format", "--check", "."],
        ["mypy"],
        ["python", "-m", "pytest", "-q", *rest],
    ]
    for step in steps:
        say("$ " + " ".join(step))
        exe = [str(BIN / step[0]), *step[1:]] if step[0] != "python" else [str(PY), *step[1:]]
        rc = subprocess.run(exe, cwd=ROOT, env=env()).returncode
        if rc != 0:
            say(f"failed: {' '.join(step)} (exit {rc})")
            return rc
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
