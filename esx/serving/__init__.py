"""How ``esx serve`` holds connections so that slow and idle clients cannot starve the others.

gunicorn's sync worker gives a whole process to one connection from accept to the last byte of
the response, with no read deadline: two connections that send nothing (or half a request, or,
under ``--auth mtls``, no ClientHello) stop a two-worker server. The model here (README "Serving
model"):

- one gunicorn worker process per core (``--workers``), each with one event loop
  (``worker.BufferedRequestWorker``) that accepts, does the TLS handshake without blocking and
  reads every request *whole* (head, then the ``Content-Length`` or chunked body) under absolute
  deadlines and size caps (``framing``), and holds hundreds of connections at the cost of a
  buffer each;
- a few application threads per process (default 4) that only ever see a complete request in
  memory, so no client's pace can keep one of them waiting; they run the WSGI application and
  write the response under a write deadline;
- limits on connections per process and per client address, enforced at accept.

The values come from the ``serving`` object of ``DIR/esx.json`` (``esx.server.SERVING_DEFAULTS``).
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Limits:
    """What one worker process allows its connections (``esx.server.SERVING_DEFAULTS`` says why)."""

    threads: int
    header_timeout: float
    body_timeout: float
    keepalive_timeout: float
    write_timeout: float
    max_header_bytes: int
    max_body_bytes: int
    max_connections: int
    max_connections_per_client: int
    # After an error or a last response, how long the loop keeps reading (and dropping) what the
    # client still sends, so that closing does not reset the answer away (RFC 9112 section 9.6).
    linger: float = 2.0
