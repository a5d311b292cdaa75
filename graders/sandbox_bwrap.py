"""How a python-grader worker is confined: the bubblewrap command line, its seccomp filter, the probe.

Each worker runs under `bwrap` (bubblewrap, the audited tool Flatpak uses) in new user, mount, pid,
network, IPC, UTS and cgroup namespaces with no capabilities, as uid/gid 65534 inside, seeing only a
read-only view of the interpreter, its standard library, the shared libraries and the allowed
site-packages, plus a private size-limited /tmp and /dev/shm. A classic-BPF seccomp filter (built
here with `struct`, no libseccomp needed) refuses every socket, new processes and threads, and the
syscalls that reach outside a namespace (ptrace, mount, unshare, setns, bpf, keyctl, io_uring...).

Fail closed: `sandbox_mode()` is "bubblewrap" only when a probe (the real sandbox starting the real
interpreter) succeeds; otherwise "unavailable: <one line naming the fix>", unless the user turned
the sandbox off explicitly with RFT_SANDBOX=off ("off").
"""

from __future__ import annotations

import functools
import os
import platform
import shutil
import site
import struct
import subprocess
import sys
import sysconfig
from pathlib import Path

#: Environment settings: RFT_SANDBOX=off turns the sandbox off; RFT_BWRAP names the bwrap binary.
SANDBOX_ENV = "RFT_SANDBOX"
BWRAP_ENV = "RFT_BWRAP"
#: Where the worker script appears inside the sandbox (the repository itself is never mounted).
WORKER_PATH = "/rft/sandbox_worker.py"
SANDBOX_UID = 65534
_WORKER_SCRIPT = Path(__file__).with_name("sandbox_worker.py")
_OFF_VALUES = frozenset({"off", "0", "false", "no", "none"})
_INSTALL_FIX = "install it (apt-get install bubblewrap, dnf install bubblewrap)"
_USERNS_FIX = ("enable unprivileged user namespaces (sysctl -w kernel.unprivileged_userns_clone=1; on Ubuntu "
               "24.04+ sysctl -w kernel.apparmor_restrict_unprivileged_userns=0)")
_OPT_OUT = "or set RFT_SANDBOX=off to run python graders unsandboxed"

# ---------------------------------------------------------------------------------------------
# seccomp (classic BPF over struct seccomp_data {int nr; u32 arch; u64 ip; u64 args[6];})

_AUDIT_ARCH = {"x86_64": 0xC000003E, "aarch64": 0xC00000B7}
_RET_ALLOW = 0x7FFF0000
_RET_KILL_PROCESS = 0x80000000
_RET_ERRNO = 0x00050000
_EPERM, _EAGAIN, _EACCES, _ENOSYS = 1, 11, 13, 38
_LD_W_ABS, _JEQ_K, _JGE_K, _RET_K = 0x20, 0x15, 0x35, 0x06
_X32_BIT = 0x40000000

#: Refused syscalls and the errno each returns. Sockets: none at all (Python starts without them);
#: processes and threads: none (RLIMIT_NPROC does not bind a root-mapped sandbox, this does).
_DENY: dict[str, int] = {
    "socket": _EACCES, "socketpair": _EACCES,
    "clone": _EAGAIN, "fork": _EAGAIN, "vfork": _EAGAIN, "clone3": _ENOSYS,
    **dict.fromkeys((
        "ptrace", "process_vm_readv", "process_vm_writev", "bpf", "perf_event_open", "keyctl", "add_key",
        "request_key", "userfaultfd", "mount", "umount2", "pivot_root", "chroot", "unshare", "setns",
        "kexec_load", "kexec_file_load", "init_module", "finit_module", "delete_module", "io_uring_setup",
        "io_uring_enter", "io_uring_register", "open_tree", "move_mount", "fsopen", "fsconfig", "fsmount",
        "fspick", "mount_setattr", "acct", "swapon", "swapoff", "reboot", "syslog", "quotactl", "iopl",
        "ioperm", "open_by_handle_at", "name_to_handle_at", "lookup_dcookie", "vhangup", "uselib",
    ), _EPERM),
}

_SYSCALLS: dict[str, dict[str, int]] = {
    "x86_64": {
        "socket": 41, "socketpair": 53, "clone": 56, "fork": 57, "vfork": 58, "clone3": 435, "ptrace": 101,
        "process_vm_readv": 310, "process_vm_writev": 311, "bpf": 321, "perf_event_open": 298, "keyctl": 250,
        "add_key": 248, "request_key": 249, "userfaultfd": 323, "mount": 165, "umount2": 166, "pivot_root": 155,
        "chroot": 161, "unshare": 272, "setns": 308, "kexec_load": 246, "kexec_file_load": 320,
        "init_module": 175, "finit_module": 313, "delete_module": 176, "io_uring_setup": 425,
        "io_uring_enter": 426, "io_uring_register": 427, "open_tree": 428, "move_mount": 429, "fsopen": 430,
        "fsconfig": 431, "fsmount": 432, "fspick": 433, "mount_setattr": 442, "acct": 163, "swapon": 167,
        "swapoff": 168, "reboot": 169, "syslog": 103, "quotactl": 179, "iopl": 172, "ioperm": 173,
        "open_by_handle_at": 304, "name_to_handle_at": 303, "lookup_dcookie": 212, "vhangup": 153, "uselib": 134,
    },
    "aarch64": {  # asm-generic numbers; no fork/vfork/iopl/ioperm/uselib on arm64
        "socket": 198, "socketpair": 199, "clone": 220, "clone3": 435, "ptrace": 117, "process_vm_readv": 270,
        "process_vm_writev": 271, "bpf": 280, "perf_event_open": 241, "keyctl": 219, "add_key": 217,
        "request_key": 218, "userfaultfd": 282, "mount": 40, "umount2": 39, "pivot_root": 41, "chroot": 51,
        "unshare": 97, "setns": 268, "kexec_load": 104, "kexec_file_load": 294, "init_module": 105,
        "finit_module": 273, "delete_module": 106, "io_uring_setup": 425, "io_uring_enter": 426,
        "io_uring_register": 427, "open_tree": 428, "move_mount": 429, "fsopen": 430, "fsconfig": 431,
        "fsmount": 432, "fspick": 433, "mount_setattr": 442, "acct": 89, "swapon": 224, "swapoff": 225,
        "reboot": 142, "syslog": 116, "quotactl": 60, "open_by_handle_at": 265, "name_to_handle_at": 264,
        "lookup_dcookie": 18, "vhangup": 58,
    },
}


def _insn(code: int, k: int, jt: int = 0, jf: int = 0) -> bytes:
    return struct.pack("=HBBI", code, jt, jf, k)


def seccomp_program(arch: str | None = None) -> bytes:
    """The compiled filter for this machine's architecture (ValueError if it is not one we know)."""
    arch = arch or platform.machine()
    if arch not in _SYSCALLS:
        raise ValueError(f"no seccomp filter for the {arch} architecture (known: {', '.join(_SYSCALLS)})")
    numbers = _SYSCALLS[arch]
    prog = [
        _insn(_LD_W_ABS, 4),                                    # A = arch
        _insn(_JEQ_K, _AUDIT_ARCH[arch], jt=1, jf=0),           # foreign ABI (e.g. int 0x80) -> kill
        _insn(_RET_K, _RET_KILL_PROCESS),
        _insn(_LD_W_ABS, 0),                                    # A = syscall number
    ]
    if arch == "x86_64":                                        # x32 ABI numbers -> ENOSYS
        prog += [_insn(_JGE_K, _X32_BIT, jt=0, jf=1), _insn(_RET_K, _RET_ERRNO | _ENOSYS)]
    for name, errno in _DENY.items():
        if name in numbers:
            prog += [_insn(_JEQ_K, numbers[name], jt=0, jf=1), _insn(_RET_K, _RET_ERRNO | errno)]
    prog.append(_insn(_RET_K, _RET_ALLOW))
    return b"".join(prog)


# ---------------------------------------------------------------------------------------------
# what the sandbox sees


def _real_python() -> str:
    """The interpreter binary itself (a venv's python is a symlink to it)."""
    return os.path.realpath(sys.executable)


def site_dirs() -> list[str]:
    """The allowed site-packages: this process's own (a venv's, and any a .pth file added)."""
    found: list[str] = []
    for entry in [*site.getsitepackages(), *sys.path]:
        if entry and Path(entry).name in ("site-packages", "dist-packages") and os.path.isdir(entry):
            real = os.path.realpath(entry)
            if real not in found:
                found.append(real)
    return found


def _python_dirs() -> list[str]:
    """The interpreter's standard library, extension modules and (if shared) libpython's directory."""
    base = {"base": sys.base_prefix, "platbase": sys.base_exec_prefix, "installed_base": sys.base_prefix,
            "installed_platbase": sys.base_exec_prefix}
    paths = sysconfig.get_paths(vars=base)
    dirs = [paths["stdlib"], paths["platstdlib"], paths["purelib"], paths["platlib"]]
    if sysconfig.get_config_var("Py_ENABLE_SHARED"):
        dirs.append(str(sysconfig.get_config_var("LIBDIR") or ""))
    return [os.path.realpath(d) for d in dirs if d and os.path.isdir(d)]


def _system_lib_args() -> list[str]:
    """Shared libraries read-only (symlinked lib dirs, as on merged-/usr systems, stay symlinks)."""
    args: list[str] = []
    for path in ("/usr/lib", "/usr/lib64", "/usr/lib32", "/usr/libx32", "/usr/local/lib",
                 "/lib", "/lib64", "/lib32", "/libx32"):
        if os.path.islink(path):
            args += ["--symlink", os.readlink(path), path]
        elif os.path.isdir(path):
            args += ["--ro-bind", path, path]
    return args


def _covered(path: str, bound: list[str]) -> bool:
    return any(path == b or path.startswith(b.rstrip("/") + "/") for b in bound)


def bwrap_args(bwrap: str, seccomp_fd: int, tmp_bytes: int, shm_bytes: int) -> list[str]:
    """The full bwrap command line (up to `--`) for one worker."""
    args = [bwrap, "--unshare-all", "--unshare-user", "--disable-userns", "--uid", str(SANDBOX_UID),
            "--gid", str(SANDBOX_UID), "--cap-drop", "ALL", "--die-with-parent", "--new-session", "--clearenv",
            "--hostname", "sandbox"]
    args += _system_lib_args()
    bound = ["/usr/lib", "/usr/lib64", "/usr/local/lib"]
    for path in sorted({_real_python(), *_python_dirs(), *site_dirs()}, key=len):  # parents first
        if not _covered(path, bound):
            args += ["--ro-bind", path, path]
            bound.append(path)
    args += ["--ro-bind", str(_WORKER_SCRIPT), WORKER_PATH]
    if os.path.exists("/etc/ld.so.cache"):
        args += ["--ro-bind", "/etc/ld.so.cache", "/etc/ld.so.cache"]
    args += ["--proc", "/proc", "--dev", "/dev",
             "--size", str(tmp_bytes), "--perms", "1777", "--tmpfs", "/tmp",
             "--size", str(shm_bytes), "--perms", "1777", "--tmpfs", "/dev/shm",
             "--remount-ro", "/", "--chdir", "/tmp", "--seccomp", str(seccomp_fd)]
    return args


def worker_command(bwrap: str, seccomp_fd: int, tmp_bytes: int, shm_bytes: int, config: str) -> list[str]:
    """bwrap ... -- python -I -B /rft/sandbox_worker.py CONFIG."""
    return [*bwrap_args(bwrap, seccomp_fd, tmp_bytes, shm_bytes), "--", _real_python(), "-I", "-B", WORKER_PATH,
            config]


def seccomp_fd() -> int:
    """A pipe's read end holding the compiled filter (bwrap reads it to EOF); the caller closes it."""
    program = seccomp_program()
    read_end, write_end = os.pipe()
    try:
        os.write(write_end, program)  # a few hundred bytes: far below the pipe buffer
    finally:
        os.close(write_end)
    return read_end


# ---------------------------------------------------------------------------------------------
# mode and probe


def find_bwrap() -> str | None:
    """RFT_BWRAP if set (must exist), else `bwrap` on PATH."""
    configured = os.environ.get(BWRAP_ENV)
    if configured:
        return configured if os.access(configured, os.X_OK) else None
    return shutil.which("bwrap")


def sandbox_mode() -> str:
    """"bubblewrap", "off" (RFT_SANDBOX=off), or "unavailable: <reason and fix>" (one line)."""
    if os.environ.get(SANDBOX_ENV, "").strip().lower() in _OFF_VALUES:
        return "off"
    return _probe(find_bwrap() or "", os.environ.get(BWRAP_ENV, ""), os.geteuid())


@functools.lru_cache(maxsize=8)
def _probe(bwrap: str, configured: str, euid: int) -> str:
    """Start the real sandbox once with the real interpreter; cached per bwrap binary and user."""
    if not bwrap:
        where = f"{BWRAP_ENV}={configured} is not an executable" if configured else "bwrap is not on PATH"
        return f"unavailable: bubblewrap is not installed ({where}): {_INSTALL_FIX}, {_OPT_OUT}"
    try:
        fd = seccomp_fd()
    except ValueError as exc:
        return f"unavailable: {exc}; {_OPT_OUT}"
    try:
        cmd = [*bwrap_args(bwrap, fd, 1 << 20, 1 << 20), "--", _real_python(), "-I", "-B", "-c",
               "import ctypes, json, math, re"]
        proc = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60,
                              pass_fds=(fd,))
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"unavailable: bubblewrap could not start ({type(exc).__name__}: {exc}); {_OPT_OUT}"
    finally:
        os.close(fd)
    if proc.returncode == 0:
        return "bubblewrap"
    line = next((ln.strip() for ln in proc.stderr.splitlines() if ln.strip()), f"exit status {proc.returncode}")
    lowered = line.lower()
    if "namespace" in lowered or "uid map" in lowered or "permission denied" in lowered or "not permitted" in lowered:
        return f"unavailable: bubblewrap cannot create a user namespace ({line}): {_USERNS_FIX}, {_OPT_OUT}"
    return f"unavailable: the sandbox could not start python ({line}); {_OPT_OUT}"


def reset_probe() -> None:
    """Forget the cached probe (after installing bubblewrap or changing the sysctl)."""
    _probe.cache_clear()
