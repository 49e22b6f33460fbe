"""Safe file output for every verb: output paths checked before the work, destinations locked while a run
writes them, results written under temporary names and renamed into place.

Temporary names carry the writer's pid (`.NAME.tmp-PID-…`, `.NAME.old-PID-…`), so that what a killed run
left behind is swept by the next run that writes NAME; cleanup itself cannot be cut short by a second Ctrl-C.
"""
from __future__ import annotations

import contextlib
import errno
import os
import re
import secrets
import shutil
import signal
import tempfile
import threading
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

from twin_kit.errors import InputError

_HELD: dict[str, int] = {}  # destinations locked by this process -> nesting depth (a lock is re-entrant)
_HELD_GUARD = threading.Lock()
_STALE = re.compile(r"(tmp|old)-(\d+)-")  # what follows `.NAME.` in a temporary name


def _label(what: str, path: Path) -> str:
    return f"{what} {path}" if what else str(path)


# ---------------------------------------------------------------------------------------------- checks

def check_parent_writable(path: str | os.PathLike, what: str = "") -> None:
    """Refuse (InputError) when the directory that will hold `path` cannot be created or written.

    Tried for real (a probe file is created and removed), so read-only file systems, immutable folders and
    missing permissions are all caught, for root too.
    """
    path = Path(path)
    parent = Path(os.path.abspath(path)).parent
    existing = parent
    while not existing.exists():
        if existing.is_symlink():
            raise InputError(f"{_label(what, path)}: {existing} is a broken symbolic link")
        existing = existing.parent
    if not existing.is_dir():
        raise InputError(f"{_label(what, path)}: {existing} is not a directory")
    try:
        fd, probe = tempfile.mkstemp(prefix=f".{path.name}.probe-{os.getpid()}-", dir=existing)
    except OSError as e:
        raise InputError(f"{_label(what, path)}: cannot write in {existing} ({e.strerror.lower()})") from None
    os.close(fd)
    os.unlink(probe)


def check_output_file(path: str | os.PathLike, suffixes: Iterable[str], what: str = "--out") -> Path:
    """A file the run will write: right suffix, not a directory, in a writable folder. Returns it as a Path."""
    path = Path(path)
    suffixes = tuple(s.lower() for s in suffixes)
    if path.is_dir():
        raise InputError(f"{_label(what, path)}: is a directory; name a {' or '.join(suffixes)} file")
    if path.suffix.lower() not in suffixes:
        raise InputError(f"{_label(what, path)}: must be a {' or '.join(suffixes)} file, "
                         f"not {path.suffix or 'a name without a suffix'}")
    if path.exists() and not path.is_file():
        raise InputError(f"{_label(what, path)}: exists and is not a regular file")
    check_parent_writable(path, what)
    return path


def _inside(a: Path, b: Path) -> bool:
    """Whether `a` is `b` or lies under it (both absolute, symlinks resolved)."""
    return a == b or b in a.parents


def check_output_dir(path: str | os.PathLike, *, inputs: Iterable[str | os.PathLike | None] = (),
                     overwrite: bool = False, replaceable: Callable[[Path], bool] | None = None,
                     kind: str = "Twin bundle", what: str = "--out", merge: bool = False) -> Path:
    """A directory the run will create (or, with `merge`, write into). Refuses, before any work:

    the current directory or one of its parents; the input itself, a folder inside it or one holding it; an
    existing file; an existing (non-empty) directory without `overwrite`, or one that `replaceable` does not
    recognise as a `kind` (so that --overwrite never deletes a user's folder); a parent that cannot be written.
    """
    path = Path(path)
    label = _label(what, path)
    real = path.resolve()
    cwd = Path.cwd().resolve()
    if not merge and _inside(cwd, real):
        raise InputError(f"{label}: is the current directory or one of its parents; name a new folder "
                         f"(e.g. twins/NAME)")
    for inp in inputs:
        if inp is None:
            continue
        src = Path(inp).resolve()
        if _inside(real, src) or _inside(src, real):
            rel = "is" if real == src else ("is inside" if _inside(real, src) else "contains")
            raise InputError(f"{label}: {rel} the input {inp}; write the output elsewhere")
    if path.exists() or path.is_symlink():
        if not path.is_dir():
            raise InputError(f"{label}: exists and is not a directory; refusing to replace it")
        if merge:
            check_parent_writable(path / "x", what)
            return path
        if not path.is_symlink() and not any(path.iterdir()):
            check_parent_writable(path, what)  # an empty folder (made for the result) holds nothing to lose
            return path
        if replaceable is not None and not replaceable(path):
            raise InputError(f"{label}: exists and is not a {kind}; refusing to replace it "
                             f"(--overwrite only replaces a {kind})")
        if not overwrite:
            raise InputError(f"{label}: already exists (pass --overwrite to replace it)")
    check_parent_writable(path, what)
    return path


# ---------------------------------------------------------------------------------------------- interrupts

@contextlib.contextmanager
def deferred_interrupts() -> Iterator[None]:
    """Hold back Ctrl-C (SIGINT) for the block, so that cleanup or a pair of renames finishes; a Ctrl-C that
    came meanwhile is delivered at the end through the previous handler (KeyboardInterrupt), unless an
    exception is already on its way out. No-op off the main thread or where SIGINT is ignored."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught: list[int] = []
    try:
        previous = signal.signal(signal.SIGINT, lambda sig, frame: caught.append(sig))
    except ValueError:  # not the main interpreter
        yield
        return
    if previous in (signal.SIG_IGN, None):
        signal.signal(signal.SIGINT, previous or signal.SIG_DFL)
        yield
        return
    failed = False
    try:
        yield
    except BaseException:
        failed = True
        raise
    finally:
        signal.signal(signal.SIGINT, previous)
        if caught and not failed:
            signal.raise_signal(signal.SIGINT)


def remove_tree(path: str | os.PathLike) -> None:
    """Remove a file or directory tree (missing is fine); a second Ctrl-C cannot cut it short."""
    path = Path(path)
    with deferred_interrupts():
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()


# ---------------------------------------------------------------------------------------------- stale files

def _pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def sweep_stale(dest: str | os.PathLike) -> list[Path]:
    """Remove `.NAME.tmp-PID-*` / `.NAME.old-PID-*` siblings of `dest` whose process is gone; returns them.

    An `.old-` copy is the previous `dest` moved aside during a swap: if `dest` itself is missing (the run died
    between the two renames) it is put back instead of removed.
    """
    dest = Path(dest)
    parent = dest.parent if str(dest.parent) else Path(".")
    if not parent.is_dir():
        return []
    swept = []
    prefix = f".{dest.name}."
    for p in sorted(parent.iterdir()):
        m = _STALE.match(p.name[len(prefix):]) if p.name.startswith(prefix) else None
        if m is None or _pid_alive(int(m.group(2))):
            continue
        if m.group(1) == "old" and not (dest.exists() or dest.is_symlink()):
            with deferred_interrupts():
                os.replace(p, dest)
            continue
        remove_tree(p)
        swept.append(p)
    return swept


# ---------------------------------------------------------------------------------------------- locks

def lock_path(dest: str | os.PathLike) -> Path:
    """The lock file of a destination: `.NAME.lock` beside it."""
    dest = Path(dest)
    return dest.with_name(f".{dest.name}.lock")


@contextlib.contextmanager
def destination_lock(dest: str | os.PathLike, label: str | None = None) -> Iterator[None]:
    """Hold an exclusive lock on `dest` for the block: a second twin process writing the same destination
    fails at once with a one-line error naming the holder's pid (and `label`, default `dest`). Re-entrant
    within a process; the lock file is removed on exit (the kernel releases the lock if the process dies)."""
    import fcntl

    dest = Path(dest)
    key = os.path.abspath(dest)
    with _HELD_GUARD:
        if key in _HELD:
            _HELD[key] += 1
            nested = True
        else:
            nested = False
    if nested:
        try:
            yield
        finally:
            with _HELD_GUARD:
                _HELD[key] -= 1
        return
    lp = lock_path(dest)
    made = make_parents(lp)
    while True:
        fd = os.open(lp, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip() or "unknown"
            os.close(fd)
            remove_empty(made)
            if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise InputError(f"{label or dest}: is being written by another twin process (pid {holder}); "
                                 "wait for it to finish") from None
            raise
        try:
            same = os.stat(lp).st_ino == os.fstat(fd).st_ino  # the holder before us may have removed it
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    with _HELD_GUARD:
        _HELD[key] = 1
    try:
        yield
    finally:
        with deferred_interrupts():
            with _HELD_GUARD:
                _HELD.pop(key, None)
            with contextlib.suppress(FileNotFoundError):
                os.unlink(lp)
            os.close(fd)
            remove_empty(made)  # folders made for the lock that the run left empty


# ---------------------------------------------------------------------------------------------- atomic output

def _temp_name(dest: Path, kind: str = "tmp") -> str:
    return f".{dest.name}.{kind}-{os.getpid()}-"


def make_parents(path: str | os.PathLike) -> list[Path]:
    """Create the missing parent directories of `path`; returns those created (outermost first)."""
    made = []
    p = Path(os.path.abspath(path)).parent
    while not p.exists():
        made.append(p)
        p = p.parent
    made.reverse()
    for d in made:
        with contextlib.suppress(FileExistsError):
            d.mkdir()
    return made


def remove_empty(dirs: list[Path]) -> None:
    """Undo `make_parents` after a failure: remove the directories it made, innermost first, if still empty."""
    for d in reversed(dirs):
        with contextlib.suppress(OSError):
            d.rmdir()


@contextlib.contextmanager
def staging_dir(dest: str | os.PathLike) -> Iterator[Path]:
    """A fresh temporary sibling directory of `dest` (`.NAME.tmp-PID-…`, mode 0755), removed on exit if it
    still exists (i.e. unless the block renamed it into place)."""
    dest = Path(dest)
    tmp = Path(tempfile.mkdtemp(prefix=_temp_name(dest), dir=dest.parent if str(dest.parent) else "."))
    try:
        os.chmod(tmp, 0o755)  # mkdtemp makes it private; a bundle is an ordinary directory
        yield tmp
    finally:
        if tmp.exists():
            remove_tree(tmp)


def replace_path(src: str | os.PathLike, dest: str | os.PathLike) -> None:
    """Rename `src` onto `dest`; an existing `dest` (file or directory) is moved aside first and removed only
    after the rename succeeded (put back if it failed). Ctrl-C cannot split the two renames."""
    src, dest = Path(src), Path(dest)
    with deferred_interrupts():
        old = None
        if dest.exists() or dest.is_symlink():
            old = dest.with_name(_temp_name(dest, "old") + secrets.token_hex(4))
            os.replace(dest, old)
        try:
            os.replace(src, dest)
        except BaseException:
            if old is not None:
                os.replace(old, dest)
            raise
    if old is not None:
        remove_tree(old)


@contextlib.contextmanager
def atomic_output(dest: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary sibling path for a file (same suffix, so writers that pick the format by suffix
    work); on success it is renamed onto `dest` (mode 0644), on failure removed."""
    dest = Path(dest)
    made = make_parents(dest)
    fd, tmp = tempfile.mkstemp(prefix=_temp_name(dest), suffix=dest.suffix, dir=dest.parent)
    os.close(fd)
    tmp = Path(tmp)
    ok = False
    try:
        yield tmp
        if not tmp.exists():
            raise OSError(errno.ENOENT, "the writer produced no file", str(dest))
        os.chmod(tmp, 0o644)
        with deferred_interrupts():
            os.replace(tmp, dest)
        ok = True
    finally:
        if not ok:
            remove_tree(tmp)
            remove_empty(made)


def atomic_write_file(path: str | os.PathLike, data: bytes) -> None:
    """Write a single file atomically (temporary sibling, then rename)."""
    with atomic_output(path) as tmp:
        tmp.write_bytes(data)


_PRIVATE: dict[str, Path] = {}


def private_temp_dir(tag: str) -> Path:
    """This process's own folder in the system temp folder (`twin-TAG-PID-…`), made on first use and removed
    when the process exits; folders of earlier processes that died without removing theirs are swept."""
    import atexit

    if tag in _PRIVATE and _PRIVATE[tag].is_dir():
        return _PRIVATE[tag]
    base = Path(tempfile.gettempdir())
    prefix = f"twin-{tag}-"
    with contextlib.suppress(OSError):
        for p in base.iterdir():
            m = re.match(rf"{re.escape(prefix)}(\d+)-", p.name)
            if m and not _pid_alive(int(m.group(1))):
                shutil.rmtree(p, ignore_errors=True)
    d = Path(tempfile.mkdtemp(prefix=f"{prefix}{os.getpid()}-", dir=base))
    _PRIVATE[tag] = d
    atexit.register(shutil.rmtree, d, True)
    return d
