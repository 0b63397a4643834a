"""A TCP proxy on loopback that breaks the connection to a server on command.

Tests put it between a client and a simulator (vcsim, the XAPI simulator) to see what the
client does when the network misbehaves, over real sockets and with the client's own TLS
passing through untouched::

    with FaultProxy("127.0.0.1", sim_port) as proxy:
        session = make_session(port=proxy.port)
        proxy.stall()      # accept and read, never answer (a hung server)
        proxy.reset()      # every open connection gets a TCP RST
        proxy.refuse()     # nobody listens: connect() is refused
        proxy.forward()    # back to normal for new connections

Modes apply to new connections; ``stall`` also silences the open ones (what the server
sends is dropped), ``reset`` and ``refuse`` end them. Every thread of the proxy is named
``faultproxy-*`` so a test can tell them from the client's own.
"""

from __future__ import annotations

import contextlib
import select
import socket
import struct
import threading
from typing import Any

FORWARD, STALL, REFUSE = "forward", "stall", "refuse"
THREAD_PREFIX = "faultproxy-"


class _Pair:
    """One client connection and its connection to the server, pumped by one thread."""

    def __init__(self, client: socket.socket, server: socket.socket) -> None:
        self.client = client
        self.server = server
        self.closed = threading.Event()

    def close(self, reset: bool = False) -> None:
        if self.closed.is_set():
            return
        self.closed.set()
        for sock in (self.client, self.server):
            if reset:
                # linger 0: close() sends RST, as a crashed peer or a middlebox would
                with contextlib.suppress(OSError):
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                    struct.pack("ii", 1, 0))
            with contextlib.suppress(OSError):
                sock.close()


class FaultProxy:
    """Forwards ``127.0.0.1:<port>`` to ``target_host:target_port`` until told otherwise."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.host = "127.0.0.1"
        self.port = 0
        self.mode = FORWARD
        self.accepted = 0
        self._pairs: list[_Pair] = []
        self._lock = threading.Lock()
        self._listener: socket.socket | None = None
        self._acceptor: threading.Thread | None = None
        self._stopping = threading.Event()

    # -- lifecycle ------------------------------------------------------------------------

    def __enter__(self) -> FaultProxy:
        self.start()
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

    def start(self) -> None:
        """Listen on a free loopback port (kept across refuse/forward)."""
        self._listen()

    def close(self) -> None:
        """Stop listening and end every connection; the proxy's threads exit."""
        self._stopping.set()
        self._unlisten()
        self.reset()

    # -- commands -------------------------------------------------------------------------

    def forward(self) -> None:
        """Pass bytes both ways (new connections; stalled ones stay silent: reset them)."""
        with self._lock:
            self.mode = FORWARD
        if self._listener is None:
            self._listen()

    def stall(self) -> None:
        """Accept and read, never answer: a server that hangs. Open connections too."""
        with self._lock:
            self.mode = STALL

    def reset(self) -> None:
        """Send a TCP RST on every open connection (both sides)."""
        with self._lock:
            pairs, self._pairs = self._pairs, []
        for pair in pairs:
            pair.close(reset=True)

    def refuse(self) -> None:
        """Stop listening (connect() is refused) and reset every open connection."""
        with self._lock:
            self.mode = REFUSE
        self._unlisten()
        self.reset()

    @property
    def open_connections(self) -> int:
        """Connections open through the proxy right now."""
        with self._lock:
            self._pairs = [p for p in self._pairs if not p.closed.is_set()]
            return len(self._pairs)

    # -- inside ---------------------------------------------------------------------------

    def _listen(self) -> None:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((self.host, self.port))
        listener.listen(128)
        self.port = listener.getsockname()[1]
        self._listener = listener
        self._acceptor = threading.Thread(target=self._accept, args=(listener,), daemon=True,
                                          name=f"{THREAD_PREFIX}accept-{self.port}")
        self._acceptor.start()

    def _unlisten(self) -> None:
        listener, self._listener = self._listener, None
        if listener is not None:
            with contextlib.suppress(OSError):
                listener.shutdown(socket.SHUT_RDWR)
            with contextlib.suppress(OSError):
                listener.close()
        acceptor, self._acceptor = self._acceptor, None
        if acceptor is not None:
            acceptor.join(5)

    def _accept(self, listener: socket.socket) -> None:
        while not self._stopping.is_set():
            try:
                client, _ = listener.accept()
            except OSError:
                return  # the listener was closed
            self.accepted += 1
            try:
                server = socket.create_connection(self.target, timeout=5)
                server.settimeout(None)
            except OSError:
                pair = _Pair(client, socket.socket())
                pair.close(reset=True)
                continue
            pair = _Pair(client, server)
            with self._lock:
                self._pairs.append(pair)
            threading.Thread(target=self._pump, args=(pair,), daemon=True,
                             name=f"{THREAD_PREFIX}pump-{self.port}").start()

    def _pump(self, pair: _Pair) -> None:
        sockets = [pair.client, pair.server]
        while not pair.closed.is_set():
            try:
                readable, _, _ = select.select(sockets, [], [], 0.2)
            except (OSError, ValueError):
                break
            for sock in readable:
                try:
                    data = sock.recv(65536)
                except OSError:
                    data = b""
                if not data:
                    if self.mode == STALL and sock is pair.server:
                        # a hung server never hangs up either: keep the client waiting
                        sockets = [pair.client]
                        continue
                    pair.close()
                    return
                if self.mode == STALL:
                    continue  # read and dropped: nobody hears anything
                other = pair.server if sock is pair.client else pair.client
                try:
                    other.sendall(data)
                except OSError:
                    pair.close()
                    return
        pair.close()


#: Threads of an in-process server (the XAPI simulator's listener and request handlers):
#: the server's, not the client's.
SERVER_THREADS = ("xapi-sim", "process_request_thread")


def client_threads() -> set[str]:
    """Names of live threads that are neither the proxy's nor an in-process server's."""
    return {t.name for t in threading.enumerate() if not t.name.startswith(THREAD_PREFIX)
            and not any(marker in t.name for marker in SERVER_THREADS)}


def open_fds() -> int:
    """File descriptors open in this process (Linux)."""
    import os
    return len(os.listdir("/proc/self/fd"))
