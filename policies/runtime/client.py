"""Twin's own policy client: the robot side of `twin serve` (or of any openpi policy server), synchronous.

`PolicyClient(url, token)` connects, reads the metadata frame (`metadata`), and `infer(obs)` sends one
observation dict and returns the server's reply dict (`actions` (H, D), `server_timing`). A text frame from the
server is its one-line error: raised as `ServerError`, and the connection stays usable. A reply that does not
come within `timeout` seconds raises TimeoutError and closes the connection (a late reply would otherwise be
taken for the next request's); a connection that the server closed raises `ServerError`.
"""
from __future__ import annotations

from policies.runtime.wire import pack, unpack
from twin_kit import InputError, one_line


class ServerError(InputError):
    """The policy server refused a request (its text-frame error), or the connection to it is gone."""


class PolicyClient:
    """A websocket connection to a policy server speaking openpi's protocol."""

    def __init__(self, url: str = "ws://127.0.0.1:8000", token: str | None = None, timeout: float | None = 30.0):
        from websockets.exceptions import InvalidStatus, InvalidURI
        from websockets.sync.client import connect

        self.url = url if url.startswith(("ws://", "wss://")) else f"ws://{url}"
        self.timeout = timeout
        headers = {"Authorization": f"Api-Key {token}"} if token else None
        try:
            self._ws = connect(self.url, additional_headers=headers, compression=None, max_size=None,
                               open_timeout=timeout)
        except InvalidStatus as e:
            code = e.response.status_code
            why = ": missing or wrong token" if code in (401, 403) else ""
            raise ServerError(f"{self.url}: the server refused the connection (HTTP {code}{why})") from None
        except InvalidURI:
            raise InputError(f"{self.url}: not a websocket URL (ws://HOST:PORT)") from None
        except (OSError, TimeoutError, ValueError) as e:
            raise ServerError(f"{self.url}: cannot connect ({one_line(e)})") from None
        except Exception as e:  # noqa: BLE001 - websockets' handshake errors (InvalidHandshake, ...)
            raise ServerError(f"{self.url}: websocket handshake failed ({type(e).__name__}: {one_line(e)})") from None
        first = self._receive()
        if not isinstance(first, dict):
            self.close()
            raise ServerError(f"{self.url}: the server's first frame is not a metadata dict")
        self.metadata: dict = first

    def infer(self, obs: dict) -> dict:
        """Send one observation (keys and arrays as `metadata["observation"]` says); the reply dict."""
        from websockets.exceptions import ConnectionClosed

        try:
            self._ws.send(pack(obs))
        except ConnectionClosed as e:
            raise ServerError(f"{self.url}: connection closed ({one_line(e)})") from None
        reply = self._receive()
        if not isinstance(reply, dict) or "actions" not in reply:
            raise ServerError(f"{self.url}: a reply without actions")
        return reply

    def _receive(self):
        from websockets.exceptions import ConnectionClosed

        try:
            frame = self._ws.recv(self.timeout)
        except TimeoutError:
            self.close()
            raise TimeoutError(f"{self.url}: no reply within {self.timeout:g} s (connection closed)") from None
        except ConnectionClosed as e:
            raise ServerError(f"{self.url}: connection closed ({one_line(e)})") from None
        if isinstance(frame, str):
            raise ServerError(frame)
        return unpack(frame)

    def close(self) -> None:
        self._ws.close()

    def __enter__(self) -> PolicyClient:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
