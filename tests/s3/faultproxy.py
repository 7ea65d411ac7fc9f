"""A fault-injecting TCP proxy for the S3 tests: 127.0.0.1 only, pure Python, threads.

It forwards bytes between a client and ``moto_server`` and, on request, treats the next new
connections (or every new one) with a fault instead:

- ``"reset"``: accept, then close with ``SO_LINGER`` 0 (the client sees a connection reset);
- ``"stall"``: accept and hold the connection open without ever answering;
- ``"503"``: read the request head (and its body when it has a ``Content-Length`` and no
  ``Expect: 100-continue``) and answer ``503 Service Unavailable`` with an S3 ``SlowDown``
  error document;
- ``"lost-reply"``: forward the request to the server, let it be carried out, then reset the
  connection instead of passing the answer on (a request that landed though its client saw a
  failure: the retry of a conditional write then meets its own first attempt);
- an outage (:meth:`FaultProxy.outage`): the listening socket is closed for a while, so
  connections are refused, then opened again on the same port.

Injecting a fault first drops every pooled pass-through connection, so that the client's next
request opens a new connection and meets the fault.
"""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
from collections.abc import Iterator

__all__ = ["FAULTS", "FaultProxy"]

#: The faults a connection can be given.
FAULTS = ("reset", "stall", "503", "lost-reply")

_SLOWDOWN = (
    b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>SlowDown</Code>'
    b"<Message>Please reduce your request rate.</Message></Error>"
)


def _close(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    with contextlib.suppress(OSError):
        sock.close()


def _reset(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    with contextlib.suppress(OSError):
        sock.close()


class FaultProxy:
    """Forward ``127.0.0.1:<port>`` to ``upstream`` and inject faults on demand.

    Parameters
    ----------
    upstream_port : int
        Port of the real server on 127.0.0.1.
    """

    def __init__(self, upstream_port: int) -> None:
        self.upstream = ("127.0.0.1", upstream_port)
        self._lock = threading.Lock()
        self._faults: list[str] = []  # one entry per coming connection
        self._permanent: str | None = None
        self._open: set[socket.socket] = set()
        self._stopped = threading.Event()
        self.connections = 0
        self.faults_served = 0
        self._listener = self._listen(0)
        self.port = int(self._listener.getsockname()[1])
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self._accepting = self._start_accepting()

    # -- control -------------------------------------------------------------------------------

    def inject(self, fault: str, count: int = 1) -> None:
        """Give the next ``count`` new connections ``fault``."""
        if fault not in FAULTS:
            raise ValueError(f"unknown fault {fault!r}; one of {FAULTS}")
        with self._lock:
            self._faults.extend([fault] * count)
        self.drop_connections()

    def always(self, fault: str | None) -> None:
        """Give every new connection ``fault`` (``None``: forward again)."""
        if fault is not None and fault not in FAULTS:
            raise ValueError(f"unknown fault {fault!r}; one of {FAULTS}")
        with self._lock:
            self._permanent = fault
        self.drop_connections()

    def heal(self) -> None:
        """Forget every pending and permanent fault."""
        with self._lock:
            self._faults.clear()
            self._permanent = None

    def outage(self, seconds: float) -> None:
        """Refuse connections for ``seconds`` (returns at once), then accept on the same port."""
        _close(self._listener)  # shutdown wakes the blocked accept() and stops listening
        self._accepting.join(timeout=5)
        self.drop_connections()

        def reopen() -> None:
            if self._stopped.wait(seconds):
                return
            self._listener = self._listen(self.port)
            self._accepting = self._start_accepting()

        threading.Thread(target=reopen, daemon=True, name="faultproxy-reopen").start()

    def drop_connections(self) -> None:
        """Close every connection the proxy holds (pooled keep-alive ones included)."""
        with self._lock:
            held, self._open = self._open, set()
        for sock in held:
            _close(sock)

    def stop(self) -> None:
        """Stop accepting and close everything."""
        self._stopped.set()
        _close(self._listener)
        self._accepting.join(timeout=5)
        self.drop_connections()

    # -- machinery -----------------------------------------------------------------------------

    @staticmethod
    def _listen(port: int) -> socket.socket:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", port))
        listener.listen(64)
        return listener

    def _start_accepting(self) -> threading.Thread:
        thread = threading.Thread(
            target=self._accept_loop, args=(self._listener,), daemon=True, name="faultproxy"
        )
        thread.start()
        return thread

    def _accept_loop(self, listener: socket.socket) -> None:
        while not self._stopped.is_set():
            try:
                client, _addr = listener.accept()
            except OSError:
                return  # listener closed (stop or outage)
            with self._lock:
                self.connections += 1
                fault = self._faults.pop(0) if self._faults else self._permanent
                if fault is not None:
                    self.faults_served += 1
                self._open.add(client)
            threading.Thread(
                target=self._serve, args=(client, fault), daemon=True, name="faultproxy-conn"
            ).start()

    def _serve(self, client: socket.socket, fault: str | None) -> None:
        if fault == "reset":
            self._forget(client)
            _reset(client)
        elif fault == "stall":
            self._stopped.wait()  # hold it until the proxy stops or drops it
        elif fault == "503":
            self._answer_503(client)
        elif fault == "lost-reply":
            self._lose_reply(client)
        else:
            self._forward(client)

    def _forget(self, sock: socket.socket) -> None:
        with self._lock:
            self._open.discard(sock)

    def _answer_503(self, client: socket.socket) -> None:
        try:
            client.settimeout(10)
            head = b""
            while b"\r\n\r\n" not in head:
                data = client.recv(65536)
                if not data:
                    return
                head += data
            header, _, body = head.partition(b"\r\n\r\n")
            fields = {
                k.strip().lower(): v.strip()
                for k, _, v in (line.partition(b":") for line in header.split(b"\r\n")[1:])
            }
            if fields.get(b"expect", b"").lower() != b"100-continue":
                remaining = int(fields.get(b"content-length", b"0") or 0) - len(body)
                while remaining > 0:
                    data = client.recv(min(remaining, 1 << 20))
                    if not data:
                        return
                    remaining -= len(data)
            client.sendall(
                b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/xml\r\n"
                + f"Content-Length: {len(_SLOWDOWN)}\r\nConnection: close\r\n\r\n".encode()
                + (b"" if header.startswith(b"HEAD ") else _SLOWDOWN)
            )
        except OSError:
            pass
        finally:
            self._forget(client)
            _close(client)

    def _lose_reply(self, client: socket.socket) -> None:
        """Forward the request; pass interim ``100 Continue`` on, reset at the final answer."""
        try:
            upstream = socket.create_connection(self.upstream, timeout=10)
        except OSError:
            self._forget(client)
            _reset(client)
            return
        with self._lock:
            self._open.add(upstream)
        pump = threading.Thread(
            target=self._pump, args=(client, upstream), daemon=True, name="faultproxy-pump"
        )
        pump.start()
        answer = b""
        try:
            while True:
                data = upstream.recv(1 << 16)
                if not data:
                    break
                answer += data
                while answer.startswith(b"HTTP/1.1 100") and b"\r\n\r\n" in answer:
                    interim, _, answer = answer.partition(b"\r\n\r\n")
                    client.sendall(interim + b"\r\n\r\n")
                if answer.startswith(b"HTTP/") and not answer.startswith(b"HTTP/1.1 100"):
                    break  # the server answered: the request was carried out
        except OSError:
            pass
        finally:
            for sock in (client, upstream):
                self._forget(sock)
            _reset(client)
            _close(upstream)
            pump.join(timeout=5)

    def _forward(self, client: socket.socket) -> None:
        try:
            upstream = socket.create_connection(self.upstream, timeout=10)
        except OSError:
            self._forget(client)
            _reset(client)
            return
        upstream.settimeout(None)
        with self._lock:
            self._open.add(upstream)
        pump = threading.Thread(
            target=self._pump, args=(upstream, client), daemon=True, name="faultproxy-pump"
        )
        pump.start()
        self._pump(client, upstream)
        pump.join()
        for sock in (client, upstream):
            self._forget(sock)
            _close(sock)

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket) -> None:
        try:
            while True:
                data = src.recv(1 << 20)
                if not data:
                    break
                dst.sendall(data)
        except OSError:
            pass
        finally:
            with contextlib.suppress(OSError):
                dst.shutdown(socket.SHUT_WR)


@contextlib.contextmanager
def running_proxy(upstream_port: int) -> Iterator[FaultProxy]:
    """Start a :class:`FaultProxy`, yield it, stop it."""
    proxy = FaultProxy(upstream_port)
    try:
        yield proxy
    finally:
        proxy.stop()
