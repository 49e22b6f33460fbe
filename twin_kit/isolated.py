"""Run a native library's call in a child process that can be killed: a C library that deadlocks (SVT-AV1 did,
once in a few hundred clips) must cost a retry, not a hung recording.

`IsolatedWorker` keeps one spawned child alive across calls (its start-up is paid once), sends it a picklable
function and arguments, and waits at most `timeout` seconds; a call that times out or a child that dies is
killed and retried in a fresh child, and after the last attempt the call fails with one line.
"""
from __future__ import annotations

import multiprocessing as mp
import signal
import threading
from collections.abc import Callable
from typing import Any

from twin_kit.cli import warn


class WorkerTimeout(RuntimeError):
    """Every attempt of an isolated call hung past its timeout or lost its child process."""


def _serve(conn) -> None:
    """The child's loop: run each (fn, args) it receives and send back ("ok", value) or ("err", exception)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle; it kills this child
    while True:
        try:
            fn, args = conn.recv()
        except (EOFError, OSError):  # the parent is gone
            return
        try:
            reply = ("ok", fn(*args))
        except Exception as exc:  # noqa: BLE001 - every failure travels back to the caller
            reply = ("err", exc)
        try:
            conn.send(reply)
        except Exception:  # noqa: BLE001 - an exception that does not pickle still reaches the caller
            conn.send(("err", RuntimeError(f"{type(reply[1]).__name__}: {reply[1]}")))


class IsolatedWorker:
    """One killable child process that runs calls in turn; `close()` (or garbage collection) ends it."""

    def __init__(self, name: str = "twin-worker") -> None:
        self.name = name
        self._proc = None
        self._conn = None

    def _start(self) -> None:
        ctx = mp.get_context("spawn")  # a fork would copy the parent's threads' locks, the hang we avoid
        parent, child = ctx.Pipe()
        proc = ctx.Process(target=_serve, args=(child,), name=self.name, daemon=True)
        # A terminal's Ctrl-C reaches the whole process group: the child starts with SIGINT ignored (a new Python
        # keeps an inherited SIG_IGN), so it never dies mid-start-up with a traceback of its own.
        main = threading.current_thread() is threading.main_thread()
        previous = signal.signal(signal.SIGINT, signal.SIG_IGN) if main else None
        try:
            proc.start()
        finally:
            if main:
                signal.signal(signal.SIGINT, previous)
        child.close()
        self._proc, self._conn = proc, parent

    def close(self) -> None:
        """End the child (kill it: it may be the one that hangs)."""
        if self._proc is not None:
            if self._proc.is_alive():
                self._proc.kill()
            self._proc.join(timeout=5)
            self._conn.close()
        self._proc = self._conn = None

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # noqa: BLE001 - interpreter shutdown
            pass

    def call(self, fn: Callable[..., Any], args: tuple, timeout: float, attempts: int = 3) -> Any:
        """fn(*args) in the child; an exception it raises is raised here. A call that takes longer than
        `timeout` seconds, or whose child dies, is retried in a new child up to `attempts` times in all."""
        what = getattr(fn, "__qualname__", repr(fn))
        for attempt in range(1, attempts + 1):
            if self._proc is None or not self._proc.is_alive():
                self.close()
                self._start()
            try:
                self._conn.send((fn, args))
                reply = self._conn.recv() if self._conn.poll(timeout) else None
            except (EOFError, BrokenPipeError, ConnectionResetError):
                reply, problem = None, "lost its worker process"
            except BaseException:  # Ctrl-C while the child works: end it, it may be mid-call
                self.close()
                raise
            else:
                problem = f"took longer than {timeout:.0f} s"
            if reply is not None:
                status, value = reply
                if status == "err":
                    raise value
                return value
            self.close()
            if attempt < attempts:
                warn(f"{what} {problem}; retrying in a new process ({attempt + 1}/{attempts})")
        raise WorkerTimeout(f"{what} {problem} in each of {attempts} attempts")
