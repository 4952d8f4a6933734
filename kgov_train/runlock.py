"""One chain per run folder: an exclusive lock on `run_dir`, refused at once when in use.

Two files, because flock and atomic publication want different things:
- `.kgov-lock` is never removed or replaced (a new inode would let a second process flock it); the
  holder keeps it open and flock()ed, so on one host the kernel drops the lock with the holder's
  process, SIGKILL included.
- `.kgov-lock.json` names the holder (a Holder as JSON). It is published complete with link(2), which
  fails when the name exists (atomic on NFS and Lustre too), so where flock is node-local exactly one
  node wins. While held, its mtime is a heartbeat: the lease that lets other nodes judge it.
Standard library only (and kgov_train.errors): this module sits in the lowest layer of the package.
"""

from __future__ import annotations

import atexit
import dataclasses
import errno
import fcntl
import json
import logging
import os
import shlex
import shutil
import socket
import subprocess
import sys
import threading
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path

from kgov_train import errors

log = logging.getLogger("kgov_train")

LOCK_NAME = ".kgov-lock"
HOLDER_NAME = ".kgov-lock.json"
HEARTBEAT_S = 30.0  # how often a holder refreshes its heartbeat
LEASE_S = 120.0  # a holder on another node without a live Slurm job is dead once its heartbeat is older
# squeue states of a job that is over for good; any other (running, completing, suspended, pending
# after a requeue: it will come back to its folder) still owns the folder.
_SLURM_OVER = {"COMPLETED", "CANCELLED", "FAILED", "TIMEOUT", "NODE_FAIL", "PREEMPTED", "BOOT_FAIL",
               "DEADLINE", "OUT_OF_MEMORY", "REVOKED"}


@dataclasses.dataclass(frozen=True)
class Holder:
    host: str
    pid: int
    slurm_job_id: str | None
    started: str  # ISO 8601, UTC
    command: str
    token: str  # uuid hex; children of the holder pass it as `inherit`

    @classmethod
    def me(cls) -> Holder:
        argv = getattr(sys, "orig_argv", None) or [sys.executable, *sys.argv]
        return cls(socket.gethostname(), os.getpid(), os.environ.get("SLURM_JOB_ID") or None,
                   datetime.now(timezone.utc).isoformat(timespec="seconds"), shlex.join(argv), uuid.uuid4().hex)

    def describe(self) -> str:
        return (f"pid {self.pid} on host {self.host} (slurm job {self.slurm_job_id or 'none'}), "
                f"since {self.started}, command: {self.command}")


class RunFolderBusy(errors.RunFolderBusy):
    """errors.RunFolderBusy with the lock file and its holder (None: not published yet)."""

    def __init__(self, lock_path: Path, holder: Holder | None, detail: str = "", message: str | None = None):
        self.lock_path, self.holder = lock_path, holder
        who = holder.describe() if holder else f"a process that has not written {HOLDER_NAME} yet"
        super().__init__(message or f"run folder {lock_path.parent} is in use by another kgov-train chain "
                                    f"(lock file {lock_path}): held by {who}{detail}")


def _read_holder(path: Path) -> tuple[Holder, float] | None:
    """The holder named in `path` and its heartbeat age in seconds, or None when there is none."""
    try:
        with open(path) as f:
            age = time.time() - os.fstat(f.fileno()).st_mtime
            text = f.read()
    except FileNotFoundError:
        return None
    try:
        return Holder(**json.loads(text)), age
    except (ValueError, TypeError):  # not ours or from another version: judged by its lease alone
        return Holder("?", -1, None, "?", f"(unreadable {path.name})", ""), age


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return pid > 0


def _slurm_alive(job_id: str) -> bool | None:
    """Whether Slurm still runs the job; None when it cannot tell (no squeue, controller down)."""
    if not shutil.which("squeue"):
        return None
    try:
        p = subprocess.run(["squeue", "-h", "-j", job_id, "-o", "%T"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if p.returncode != 0:  # a job purged from the controller is "Invalid job id"; other errors say nothing
        return False if "invalid job id" in p.stderr.lower() else None
    return any(s not in _SLURM_OVER for s in p.stdout.split())  # empty: squeue no longer knows it


def _why_dead(h: Holder, age: float, flocked: bool, lease_s: float) -> str | None:
    """Why holder `h` (heartbeat `age` s old) is dead, or None while it may be alive."""
    if h.host == socket.gethostname():
        # Holding the flock proves it: a live holder on this host would still hold it. (Only another
        # kernel with our host name could fool this.) Without flock, ask the kernel about the pid.
        if flocked or not _pid_alive(h.pid):
            return "its process is gone"
        return None
    own = os.environ.get("SLURM_JOB_ID")
    if h.slurm_job_id and h.slurm_job_id == own:
        return f"it is an earlier run of our own Slurm job {own} (requeued)"
    if h.slurm_job_id:
        alive = _slurm_alive(h.slurm_job_id)
        if alive is not None:
            return None if alive else f"its Slurm job {h.slurm_job_id} has ended"
    # mtime comes from the file server's clock on NFS; the lease absorbs modest skew
    return f"its heartbeat is {age:.0f}s old (lease {lease_s:g}s)" if age > lease_s else None


def _remove_if(path: Path, token: str) -> None:
    """Remove the holder file if it still names `token`. Rename first: only one remover can win it,
    and if another node replaced the file in between, the winner puts the new one back."""
    aside = path.with_name(f"{HOLDER_NAME}.{uuid.uuid4().hex}.stale")
    try:
        os.rename(path, aside)
    except FileNotFoundError:
        return
    cur = _read_holder(aside)
    if cur is not None and cur[0].token != token:
        try:
            os.link(aside, path)
        except FileExistsError:
            pass
    aside.unlink(missing_ok=True)


class RunLock:
    """The held lock (a context manager). An inherited one (`acquire(inherit=token)`) releases nothing."""

    def __init__(self, run_dir: Path, holder: Holder, fd: int | None, heartbeat_s: float):
        self.run_dir, self.holder, self.token = run_dir, holder, holder.token
        self.inherited = fd is None
        self._fd, self._released, self._stop = fd, False, threading.Event()
        self._thread = None
        if not self.inherited:
            self._thread = threading.Thread(target=self._beat, args=(heartbeat_s,), daemon=True,
                                            name="kgov-runlock-heartbeat")
            self._thread.start()
            atexit.register(self.release)

    @property
    def path(self) -> Path:
        return self.run_dir / LOCK_NAME

    def _beat(self, every: float) -> None:
        hp = self.run_dir / HOLDER_NAME
        while not self._stop.wait(every):
            try:
                cur = _read_holder(hp)
                if cur is None or cur[0].token != self.token:
                    log.error("run folder lock %s no longer names us (now: %s); heartbeat stopped",
                              hp, cur[0].describe() if cur else "no holder")
                    return
                os.utime(hp)
            except OSError as e:  # a hiccup of the shared file system: try again next beat
                log.warning("run folder lock heartbeat on %s failed: %s", hp, e)

    def release(self) -> None:
        if self._released:
            return
        self._released = True
        if self.inherited:
            return
        atexit.unregister(self.release)
        self._stop.set()
        self._thread.join()
        hp = self.run_dir / HOLDER_NAME
        cur = _read_holder(hp)
        if cur is not None and cur[0].token == self.token:  # before unlocking, so no one sees it stale
            _remove_if(hp, self.token)
        os.close(self._fd)  # drops the flock

    def __enter__(self) -> RunLock:
        return self

    def __exit__(self, *exc) -> None:
        self.release()


def _holder_of_busy(hp: Path, wait_s: float = 2.0) -> Holder | None:
    """The holder that beat us to the flock; it may be a moment from writing its file."""
    deadline, host = time.monotonic() + wait_s, socket.gethostname()
    while True:
        cur = _read_holder(hp)
        if cur and (cur[0].host != host or _pid_alive(cur[0].pid)) or time.monotonic() > deadline:
            return cur[0] if cur else None
        time.sleep(0.05)


def acquire(run_dir: Path, *, inherit: str | None = None, lease_s: float | None = None,
            heartbeat_s: float | None = None) -> RunLock:
    """Lock `run_dir` for this chain, or raise RunFolderBusy naming its holder. With `inherit`, a
    process started by the holder joins its lock (checked against the token) without taking it."""
    run_dir = Path(run_dir)
    lock_path, hp = run_dir / LOCK_NAME, run_dir / HOLDER_NAME
    lease_s = LEASE_S if lease_s is None else lease_s  # module attributes read now: tests may patch them
    heartbeat_s = HEARTBEAT_S if heartbeat_s is None else heartbeat_s
    if inherit is not None:
        cur = _read_holder(hp)
        if cur is None:
            raise RunFolderBusy(lock_path, None, message=f"cannot inherit the lock of run folder {run_dir} "
                                f"(token {inherit}): no chain holds it ({hp} is missing)")
        if cur[0].token != inherit:
            raise RunFolderBusy(lock_path, cur[0], f"; inherit token {inherit} is not the holder's: "
                                "this process was not started by it")
        return RunLock(run_dir, cur[0], None, 0.0)
    run_dir.mkdir(parents=True, exist_ok=True)
    me = Holder.me()
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)  # not inherited by exec'd children
    tmp = hp.with_name(f"{HOLDER_NAME}.{me.token}.tmp")
    try:
        flocked = True
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
                raise RunFolderBusy(lock_path, _holder_of_busy(hp)) from None
            if e.errno not in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS):
                raise
            log.warning("flock unsupported on %s (%s): relying on the holder file and its lease", lock_path, e)
            flocked = False
        tmp.write_text(json.dumps(dataclasses.asdict(me), indent=1) + "\n")
        for _ in range(3):  # each pass publishes, refuses, or removes one dead holder
            try:
                os.link(tmp, hp)
                return RunLock(run_dir, me, fd, heartbeat_s)
            except FileExistsError:
                pass
            cur = _read_holder(hp)
            if cur is None:
                continue  # released in between
            why = _why_dead(cur[0], cur[1], flocked, lease_s)
            if why is None:
                raise RunFolderBusy(lock_path, cur[0])
            log.warning("run folder %s: taking over the lock of dead holder %s: %s", run_dir, cur[0].describe(), why)
            _remove_if(hp, cur[0].token)
        cur = _read_holder(hp)
        raise RunFolderBusy(lock_path, cur[0] if cur else None, "; contended, try again")
    except BaseException:
        os.close(fd)
        raise
    finally:
        tmp.unlink(missing_ok=True)
