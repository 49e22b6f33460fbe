"""`twin serve`: a policy behind a websocket, wire-compatible with openpi's policy server.

Protocol (what `openpi-client`'s WebsocketClientPolicy speaks): on connect the server sends one binary frame,
the metadata dict (`ServedPolicy.metadata`); then each binary frame from the client is an observation dict
(openpi's msgpack NumPy encoding, `policies.runtime.wire`) and gets one binary frame back, `{"actions": (H, D)
float32, "server_timing": {"infer_ms", "prev_total_ms"}}`. A malformed request gets a text frame, the one-line
error, and the connection goes on serving. `GET /healthz` answers 200 over plain HTTP (no token needed).

Inference runs in a thread pool (`workers` at once), so several clients are served together and the event loop
keeps answering pings and health checks. The server binds loopback unless told otherwise; any other address
needs a token, and then every websocket client must send `Authorization: Api-Key <token>` (401 without it).
Ctrl-C (or SIGTERM) closes the connections (1001, going away), lets running inferences finish, and returns.
"""
from __future__ import annotations

import asyncio
import contextlib
import hmac
import ipaddress
import logging
import signal
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from http import HTTPStatus

from policies.runtime.wire import pack, unpack
from twin_kit import InputError, emit_json, info, one_line, warn

HEALTH_PATH = "/healthz"
MIN_MESSAGE = 16 << 20  # bytes: the largest request accepted is max(this, 4 x a full observation)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_bind(host: str, token: str | None) -> None:
    """Refuse (one line) to listen off loopback without a token."""
    if not is_loopback(host) and not token:
        raise InputError(f"--host {host} is not a loopback address: serving it needs --token (clients then send "
                         f"'Authorization: Api-Key TOKEN')")


class _OneLine(logging.Handler):
    """websockets' own log records (failed handshakes, ...) as one-line warnings, without tracebacks."""

    def emit(self, record: logging.LogRecord) -> None:
        if record.levelno >= logging.WARNING:
            exc = record.exc_info[1] if record.exc_info else None
            cause = f" ({type(exc).__name__}: {one_line(exc)})" if exc is not None else ""
            warn(f"websocket: {record.getMessage()}{cause}")


_LOG = logging.getLogger("twin.serve")
_LOG.propagate = False
if not _LOG.handlers:
    _LOG.addHandler(_OneLine())


class PolicyServer:
    """Serves a `ServedPolicy` (policies.runtime.policy) on ws://host:port. `serve_forever()` runs it in this
    thread until Ctrl-C; `start()`/`stop()` (or `with`) run it in a background thread, as tests and an in-process
    robot runtime do. `port` 0 takes a free port; `self.port` is the bound one once started."""

    def __init__(self, policy, host: str = "127.0.0.1", port: int = 8000, token: str | None = None,
                 workers: int = 2, on_listen: Callable[[], None] | None = None):
        check_bind(host, token)
        self.on_listen = on_listen  # called once the socket listens (the CLI prints the address)
        self.policy, self.token, self.workers = policy, token, int(workers)
        self.host = "127.0.0.1" if host == "localhost" else host  # one socket, so port 0 means one port
        self.port = int(port)
        self.metadata = policy.metadata()
        self._meta_frame = pack(self.metadata)
        full = sum(int(_nbytes(s["shape"], s["dtype"])) for s in self.metadata["observation"].values())
        self.max_message = max(MIN_MESSAGE, 4 * full)
        self.stats = {"clients": 0, "requests": 0, "errors": 0}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None

    @property
    def url(self) -> str:
        return f"ws://{self.host}:{self.port}"

    # --- running ---------------------------------------------------------------------------------------------

    def serve_forever(self) -> None:
        """Serve in this thread until SIGINT or SIGTERM (a second Ctrl-C interrupts the shutdown itself)."""
        asyncio.run(self._main(on_signal=True))

    def start(self, timeout: float = 30.0) -> PolicyServer:
        """Serve in a background thread; returns once the socket listens (errors are raised here)."""
        ready = threading.Event()

        def run():
            try:
                asyncio.run(self._main(ready=ready))
            except BaseException as e:  # noqa: BLE001 - handed to the starting thread
                self._error = e
                ready.set()

        self._thread = threading.Thread(target=run, name="twin-serve", daemon=True)
        self._thread.start()
        if not ready.wait(timeout):
            raise TimeoutError(f"the policy server did not start within {timeout:g} s")
        if self._error is not None:
            raise self._error
        return self

    def stop(self, timeout: float = 30.0) -> None:
        """Close the connections and stop a server run by `start()`."""
        if self._loop is not None and self._stop is not None:
            with contextlib.suppress(RuntimeError):  # the loop already ended
                self._loop.call_soon_threadsafe(self._stop.set)
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def __enter__(self) -> PolicyServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    async def _main(self, ready: threading.Event | None = None, on_signal: bool = False) -> None:
        from websockets.asyncio.server import serve

        self._loop, self._stop = asyncio.get_running_loop(), asyncio.Event()
        if on_signal:
            def first_signal(sig: int) -> None:
                info("stopping: closing connections (Ctrl-C again to interrupt)")
                self._stop.set()
                self._loop.remove_signal_handler(sig)

            for sig in (signal.SIGINT, signal.SIGTERM):
                self._loop.add_signal_handler(sig, first_signal, sig)
        pool = ThreadPoolExecutor(self.workers, thread_name_prefix="twin-infer")
        try:
            try:
                server = await serve(lambda ws: self._session(ws, pool), self.host, self.port, compression=None,
                                     max_size=self.max_message, process_request=self._gate, logger=_LOG)
            except OSError as e:
                raise InputError(f"--port {self.port}: cannot listen on {self.host} ({one_line(e)})") from None
            try:
                self.port = server.sockets[0].getsockname()[1]
                if self.on_listen is not None:
                    self.on_listen()
                if ready is not None:
                    ready.set()
                await self._stop.wait()
            finally:
                server.close()
                await server.wait_closed()
        finally:
            pool.shutdown(wait=True, cancel_futures=True)

    # --- the protocol ----------------------------------------------------------------------------------------

    def _gate(self, connection, request):
        """Before the websocket handshake: answer the health check; refuse clients without the token."""
        if request.path.split("?", 1)[0] == HEALTH_PATH:
            return connection.respond(HTTPStatus.OK, "OK\n")
        if self.token is not None:
            got = request.headers.get("Authorization", "")
            if not hmac.compare_digest(got.encode(), f"Api-Key {self.token}".encode()):
                return connection.respond(HTTPStatus.UNAUTHORIZED, "missing or wrong API key (send the header "
                                                                   "'Authorization: Api-Key TOKEN')\n")
        return None

    async def _session(self, ws, pool: ThreadPoolExecutor) -> None:
        from websockets.exceptions import ConnectionClosed

        peer = _peer(ws)
        self.stats["clients"] += 1
        info(f"client {peer} connected")
        prev_total = None
        try:
            await ws.send(self._meta_frame)
            async for message in ws:
                t0 = time.perf_counter()
                reply = await self._answer(message, pool, prev_total)
                self.stats["requests"] += 1
                if isinstance(reply, str):
                    self.stats["errors"] += 1
                await ws.send(reply)
                prev_total = (time.perf_counter() - t0) * 1e3
        except ConnectionClosed:
            pass
        info(f"client {peer} left")

    async def _answer(self, message, pool: ThreadPoolExecutor, prev_total: float | None) -> bytes | str:
        """The reply frame to one request: the packed actions, or a one-line error (a text frame)."""
        if isinstance(message, str):
            return "send observations as binary msgpack frames (openpi's encoding), not text"
        try:
            checked = self.policy.check(unpack(message))
        except InputError as e:
            return one_line(e)
        except Exception as e:  # noqa: BLE001 - a request nobody foresaw is still only that client's problem
            return f"bad request ({type(e).__name__}: {one_line(e)})"
        try:
            t0 = time.perf_counter()
            actions = await asyncio.get_running_loop().run_in_executor(pool, self.policy.predict, checked)
            infer_ms = (time.perf_counter() - t0) * 1e3
        except InputError as e:
            return one_line(e)
        except Exception as e:  # noqa: BLE001 - a failed inference is reported to its client, the server goes on
            warn(f"inference failed: {type(e).__name__}: {one_line(e)}")
            return f"inference failed: {type(e).__name__}: {one_line(e)}"
        timing = {"infer_ms": infer_ms}
        if prev_total is not None:
            timing["prev_total_ms"] = prev_total
        return pack({"actions": actions, "server_timing": timing})


def _nbytes(shape, dtype: str) -> int:
    import numpy as np

    n = 1
    for d in shape:
        n *= max(int(d), 1)
    return n * np.dtype(dtype).itemsize


def _peer(ws) -> str:
    addr = getattr(ws, "remote_address", None)
    return f"{addr[0]}:{addr[1]}" if isinstance(addr, tuple) and len(addr) >= 2 else "?"


def run_serve(cfg, json_out: bool = False) -> int:
    """`twin serve`: check the bind, load the policy, serve until Ctrl-C, report."""
    from policies.runtime.policy import load_served

    check_bind(cfg.host, cfg.token)
    t0 = time.perf_counter()
    policy = load_served(cfg.run, cfg.runtime, cfg.onnx, cfg.threads, cfg.device, cfg.seed)
    loaded = time.perf_counter() - t0
    meta = policy.metadata()
    cams = len(meta["observation"]) - 1

    def listening() -> None:
        info(f"serving the {policy.kind} policy of {policy.source} ({cfg.runtime}; {cams} camera"
             f"{'s' if cams != 1 else ''}, actions {meta['action']['shape']}) on {server.url} "
             f"(health: http://{server.host}:{server.port}{HEALTH_PATH}"
             f"{'; clients need the token' if cfg.token else ''}); Ctrl-C stops")

    server = PolicyServer(policy, cfg.host, cfg.port, cfg.token, cfg.workers, listening)
    started = time.perf_counter()
    server.serve_forever()
    s = server.stats
    info(f"stopped: {s['requests']} requests ({s['errors']} refused) from {s['clients']} clients")
    if json_out:
        emit_json({"url": server.url, "policy": policy.kind, "runtime": cfg.runtime, "source": policy.source,
                   "load_s": round(loaded, 2), "served_s": round(time.perf_counter() - started, 2), **s})
    return 0
