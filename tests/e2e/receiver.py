"""An operator's and an SM-DP's listening side, for the tests: records every POST it receives.

The SM-SR delivers callbacks and notifications here (the demo MNO's registered endpoint, or a
wsa:ReplyTo naming a path under it). Each message is parsed and kept with its WS-Addressing
headers; tests wait for the ones they expect and validate their bodies against the official XSD.
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from lxml import etree

from esx.binding.ns import SOAP12

from .conftest import SoapReply


@dataclass
class Received(SoapReply):
    """One POST the receiver got: a SoapReply (headers, Status, codes) plus where and when it arrived."""

    path: str = ""
    at: float = 0.0

    @property
    def name(self) -> str:
        return etree.QName(self.body).localname


class Receiver:
    def __init__(self) -> None:
        self.messages: list[Received] = []
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - http.server's naming
                data = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                envelope = etree.fromstring(data)
                body = next(c for c in envelope.find(f"{{{SOAP12}}}Body") if isinstance(c.tag, str))
                with receiver.lock:
                    receiver.messages.append(Received(202, envelope, body, path=self.path, at=time.monotonic()))
                self.send_response(202)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def find(self, predicate) -> list[Received]:
        with self.lock:
            return [m for m in self.messages if predicate(m)]

    def wait(self, predicate, *, count: int = 1, timeout: float = 30.0) -> list[Received]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = self.find(predicate)
            if len(found) >= count:
                return found
            time.sleep(0.05)
        raise AssertionError(f"expected {count} message(s), got {len(self.find(predicate))} within {timeout} s")

    def callbacks(self, message_id: str) -> list[Received]:
        return self.find(lambda m: m.header("RelatesTo") == message_id)

    def callback(self, message_id: str, timeout: float = 30.0) -> Received:
        return self.wait(lambda m: m.header("RelatesTo") == message_id, timeout=timeout)[0]

    def notifications(self, name: str, eid: str, iccid: str) -> list[Received]:
        return self.find(lambda m: m.name == name and m.text("rps:Eid") == eid and m.text("rps:Iccid") == iccid)
