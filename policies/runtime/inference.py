"""Asynchronous inference for the control loop: a policy source (a run loaded in this process, or a policy server
at ws://HOST:PORT) called on a worker thread, so the loop keeps its rate while the next chunk is computed.

Both sources answer the same thing, an (H, D) action chunk for one observation dict, and are called through the
same worker, so a local policy's delay is measured as honestly as a server's. A source that fails (the server
closed, a timeout, a refused request) raises; the worker hands the error back as the request's result and the
remote source reconnects on its next request. `Chunks` turns a policy-rate chunk into control-rate targets.
"""
from __future__ import annotations

import math
import queue
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from twin_kit import InputError, one_line


class LocalSource:
    """A trained policy in this process (`load_served`): run folder, saved policy folder or .onnx export."""

    def __init__(self, policy):
        self.policy = policy
        self.metadata = policy.metadata()
        self.label = str(policy.source)

    def infer(self, obs: dict) -> np.ndarray:
        return self.policy.infer(obs)

    def close(self) -> None:
        pass


class RemoteSource:
    """A policy server speaking openpi's protocol (`twin serve`, or openpi's own), through Twin's client. A reply
    slower than `timeout` seconds counts as a failure; a lost connection is opened again on the next request."""

    def __init__(self, url: str, token: str | None = None, timeout: float = 1.0, connect_timeout: float = 10.0):
        from policies.runtime.client import PolicyClient

        self.url, self.token, self.timeout = url, token, float(timeout)
        self._connect = PolicyClient
        self._client = PolicyClient(url, token, connect_timeout)
        self._client.timeout = self.timeout
        self.metadata = self._client.metadata
        self.label = url
        self._lock = threading.Lock()

    def infer(self, obs: dict) -> np.ndarray:
        with self._lock:
            client = self._client
        if client is None:
            client = self._reconnect()
        try:
            return client.infer(obs)["actions"]
        except BaseException:
            self._drop(client)
            raise

    def _reconnect(self):
        client = self._connect(self.url, self.token, self.timeout)
        if client.metadata.get("action") != self.metadata.get("action"):
            client.close()
            raise InputError(f"{self.url}: the server now serves another policy (actions "
                             f"{client.metadata.get('action', {}).get('shape')})")
        with self._lock:
            self._client = client
        return client

    def _drop(self, client) -> None:
        """Forget a failed connection; its closing handshake (seconds over a stalled network) runs aside."""
        with self._lock:
            if self._client is client:
                self._client = None
        threading.Thread(target=_close_quietly, args=(client,), daemon=True).start()

    def close(self) -> None:
        """Close the connection (from any thread: a reply being waited for is abandoned)."""
        with self._lock:
            client, self._client = self._client, None
        if client is not None:
            threading.Thread(target=_close_quietly, args=(client,), daemon=True).start()


def _close_quietly(client) -> None:
    try:
        client.close()
    except Exception:  # noqa: BLE001 - a connection already gone is closed enough
        pass


def open_source(source: str, runtime: str = "onnx", token: str | None = None, timeout: float = 1.0,
                threads: int = 1):
    """The policy behind `source`: ws://HOST:PORT (a server) or a run/policy folder/.onnx file (this process)."""
    if source.startswith(("ws://", "wss://")):
        return RemoteSource(source, token, timeout)
    if not Path(source).exists():
        raise InputError(f"{source}: no such run folder or policy file (or give ws://HOST:PORT of a policy server)")
    from policies.runtime.policy import load_served

    return LocalSource(load_served(source, runtime, threads=threads))


@dataclass
class Result:
    """The answer to one request: the chunk or the error, its tag (the control step of its observation) and the
    monotonic times it was sent and answered."""

    tag: int
    actions: np.ndarray | None
    error: str | None
    sent: float
    done: float


class InferenceWorker:
    """One background thread calling `source.infer`: `submit(obs, tag)` when not `busy`, `poll()` each step."""

    def __init__(self, source):
        self.source = source
        self._requests: queue.Queue = queue.Queue()
        self._results: queue.Queue = queue.Queue()
        self.busy = False
        self._thread = threading.Thread(target=self._run, name="twin-inference", daemon=True)
        self._thread.start()

    def submit(self, obs: dict, tag: int) -> None:
        if self.busy:
            raise RuntimeError("a request is still in flight")
        self.busy = True
        self._requests.put((obs, tag, time.monotonic()))

    def poll(self) -> Result | None:
        """The finished request's result, if it finished (then the worker is free again)."""
        try:
            res = self._results.get_nowait()
        except queue.Empty:
            return None
        self.busy = False
        return res

    def drain(self, timeout: float) -> bool:
        """Wait (at most `timeout` s) for a request still in flight and drop its result: the next episode must
        not take the last one's chunk. Whether the worker is free."""
        if not self.busy:
            return True
        try:
            self._results.get(timeout=timeout)
        except queue.Empty:
            return False
        self.busy = False
        return True

    def _run(self) -> None:
        while True:
            item = self._requests.get()
            if item is None:
                return
            obs, tag, sent = item
            try:
                actions, error = np.asarray(self.source.infer(obs)), None
            except Exception as e:  # noqa: BLE001 - any failure of the policy is a missing chunk for the loop
                actions, error = None, f"{type(e).__name__}: {one_line(e)}"
            self._results.put(Result(tag, actions, error, sent, time.monotonic()))

    def close(self, timeout: float = 2.0) -> None:
        """Stop the thread (a call still running is abandoned once the source is closed)."""
        self._requests.put(None)
        self.source.close()
        self._thread.join(timeout)


@dataclass(frozen=True)
class Chunks:
    """Policy-rate chunks (H, D) at `fps` <-> control-rate targets at `k` control steps per policy frame.

    Action i of a chunk whose observation was taken at control step s is the target at step s + i k; the steps
    between are interpolated linearly, so a chunk covers (H - 1) k + 1 control steps."""

    horizon: int
    dim: int
    k: int

    @property
    def control_len(self) -> int:
        return (self.horizon - 1) * self.k + 1

    def check(self, actions) -> str | None:
        """Why `actions` is not a usable chunk (wrong shape, NaN/inf), or None."""
        a = actions if isinstance(actions, np.ndarray) else None
        if a is None or a.dtype.kind not in "fiu":
            return f"the chunk is not a numeric array ({type(actions).__name__})"
        if a.shape != (self.horizon, self.dim):
            return f"the chunk has shape {a.shape}, expected ({self.horizon}, {self.dim})"
        if not np.isfinite(a).all():
            return "the chunk holds NaN or inf"
        return None

    def upsample(self, actions: np.ndarray) -> np.ndarray:
        """(control_len, D) targets through the chunk's actions."""
        a = np.asarray(actions, dtype=np.float64)
        if self.k == 1 or self.horizon == 1:
            return a.copy()
        t = np.arange(self.control_len) / self.k
        i = np.minimum(np.floor(t).astype(int), self.horizon - 2)
        w = (t - i)[:, None]
        return (1 - w) * a[i] + w * a[i + 1]

    def prefix(self, planned: np.ndarray | None, committed_steps: int) -> tuple[np.ndarray | None, int]:
        """The real-time chunking prefix at the policy's rate: the plan's actions at this chunk's action times
        (every k-th control step), and how many must be kept so the chunks agree up to `committed_steps`."""
        if planned is None or not len(planned):
            return None, 0
        p = np.asarray(planned[::self.k][:self.horizon], dtype=np.float32)
        return p, min(len(p), math.ceil(committed_steps / self.k) + 1)
