"""Where one HTTP/1.1 request ends in a byte buffer: the framing core of the serving loop (no I/O).

Theory of operation
-------------------
The serving loop (``esx.serving.worker``) reads a connection's bytes into a buffer and asks a
:class:`RequestFramer` after every read whether the buffer now holds a whole request. The framer
answers ``None`` (not yet), :class:`Framed` (the request is ``buf[:length]``; anything after it is
the next, pipelined, request) or :class:`Refused` (answer this status and close). It keeps its
place between calls, so a request read a byte at a time is scanned once, not once per byte.

=========  ================================================  ===========================================
stage      looks for                                         refuses
=========  ================================================  ===========================================
head       CRLF CRLF (one leading CRLF is skipped, as        431 head over ``max_head_bytes``; 400 bare LF
           gunicorn's parser does, RFC 9112 section 2.2)
framing    Content-Length / Transfer-Encoding / Expect        400 both, several Content-Length, a non-digit
           in the head                                        length, a coding list not ending in chunked;
                                                             413 Content-Length over ``max_body_bytes``
body       Content-Length bytes, or the chunks up to the      413 chunk sizes adding up to more than
           zero chunk and the end of the trailer section      ``max_body_bytes`` (said as soon as a size line
                                                             says so, before its data arrives); 400 a bad
                                                             size line or a chunk without its CRLF
=========  ================================================  ===========================================

The framer only decides where a request ends and whether it is too big. Everything else about the
head (request line, header names and values, chunk extensions, trailers) is judged afterwards by
gunicorn's own parser, run over exactly these bytes; a head both accept is framed the same way by
both, because the framer is never more lenient about the three headers it reads.
"""
from __future__ import annotations

from dataclasses import dataclass

CRLF = b"\r\n"
HEAD_END = b"\r\n\r\n"
HEX_DIGITS = frozenset(b"0123456789abcdefABCDEF")
MAX_CHUNK_SIZE_LINE = 4096  # a size in hex and, rarely, extensions; gunicorn's own cap is 8190
MAX_CONTENT_LENGTH_DIGITS = 18  # anything longer is over every sane limit (and int() stays cheap)


@dataclass(frozen=True)
class Framed:
    """A whole request: the first ``length`` bytes of the buffer."""

    length: int
    chunked: bool
    content_length: int | None  # the declared length; None when chunked or without a body


@dataclass(frozen=True)
class Refused:
    """The request cannot be served: answer ``status`` and close the connection."""

    status: int
    reason: str


class RequestFramer:
    """Scans one request at a time; :meth:`reset` after the request is taken from the buffer."""

    def __init__(self, max_head_bytes: int, max_body_bytes: int) -> None:
        self.max_head_bytes = max_head_bytes
        self.max_body_bytes = max_body_bytes
        # Chunk framing costs bytes too ("1\r\nx\r\n" carries one byte in six): bound the raw body
        # as well. An eighth on top is far more than chunks of a kilobyte or more ever cost.
        self.max_raw_body_bytes = max_body_bytes + max_body_bytes // 8 + 65536
        self.reset()

    def reset(self) -> None:
        self._start: int | None = None  # where the request line starts
        self._searched = 0  # the head terminator is not before this offset
        self._lf_at = 0  # every LF before this offset follows a CR
        self.head_end: int | None = None  # just past the blank line, once the head is complete
        self.http11 = False
        self.chunked = False
        self.content_length: int | None = None
        self.expect_continue = False
        self._chunk_at = 0  # the next chunk-size line starts here
        self._body_bytes = 0  # data bytes of the chunks accepted so far

    @property
    def head_complete(self) -> bool:
        return self.head_end is not None

    @property
    def body_expected(self) -> bool:
        return self.chunked or bool(self.content_length)

    def scan(self, buf: bytes | bytearray) -> Framed | Refused | None:
        if self.head_end is None:
            refused = self._scan_head(buf)
            if refused is not None or self.head_end is None:
                return refused
        if self.chunked:
            return self._scan_chunks(buf)
        end = self.head_end + (self.content_length or 0)
        return Framed(end, False, self.content_length) if len(buf) >= end else None

    # -- the head ------------------------------------------------------------------------------

    def _scan_head(self, buf: bytes | bytearray) -> Refused | None:
        if self._start is None:
            if not buf or buf[:1] == b"\r" and len(buf) < 2:
                return None
            self._start = 2 if buf[:2] == CRLF else 0
            self._searched = self._lf_at = self._start
        idx = buf.find(HEAD_END, self._searched)
        if self._bare_lf(buf, idx + 4 if idx >= 0 else len(buf)):
            return Refused(400, "bare LF in the request head (RFC 9112 section 2.2)")
        if idx < 0:
            if len(buf) - self._start > self.max_head_bytes:
                return Refused(431, f"request head over {self.max_head_bytes} bytes")
            self._searched = max(self._start, len(buf) - 3)
            return None
        if idx + 4 - self._start > self.max_head_bytes:
            return Refused(431, f"request head over {self.max_head_bytes} bytes")
        refused = self._read_framing_headers(bytes(buf[self._start:idx]))
        if refused is None:
            self.head_end = idx + 4
            self._chunk_at = self.head_end
        return refused

    def _bare_lf(self, buf: bytes | bytearray, end: int) -> bool:
        """Whether a LF not preceded by CR lies in buf[:end]; each LF is looked at once."""
        while (lf := buf.find(b"\n", self._lf_at, end)) >= 0:
            if lf == self._start or buf[lf - 1] != 0x0D:
                return True
            self._lf_at = lf + 1
        return False

    def _read_framing_headers(self, head: bytes) -> Refused | None:
        request_line, *lines = head.split(CRLF)
        self.http11 = request_line.endswith(b" HTTP/1.1")
        lengths: list[bytes] = []
        codings: list[bytes] = []
        for line in lines:
            name, colon, value = line.partition(b":")
            key = name.strip(b" \t").upper()
            if not colon or key not in (b"CONTENT-LENGTH", b"TRANSFER-ENCODING", b"EXPECT"):
                continue  # gunicorn's parser judges every other line
            if key != name.upper():
                return Refused(400, f"whitespace around the header name {key.decode()}")
            value = value.strip(b" \t")
            if key == b"CONTENT-LENGTH":
                lengths.append(value)
            elif key == b"TRANSFER-ENCODING":
                codings.extend(c.strip(b" \t").lower() for c in value.split(b","))
            elif value.lower() == b"100-continue":
                self.expect_continue = True
        if codings:
            # RFC 9112 section 6.3: a request whose codings do not end with chunked has no
            # determinable length; with a Content-Length as well it is a smuggling attempt.
            if codings[-1] != b"chunked" or codings.count(b"chunked") > 1:
                return Refused(400, "Transfer-Encoding must end with chunked, once")
            if lengths:
                return Refused(400, "both Transfer-Encoding and Content-Length")
            self.chunked = True
            return None
        if len(lengths) > 1:
            return Refused(400, "more than one Content-Length")
        if lengths:
            value = lengths[0]
            if not value.isdigit() or not value.isascii():
                return Refused(400, "Content-Length is not a number")
            if len(value) > MAX_CONTENT_LENGTH_DIGITS or int(value) > self.max_body_bytes:
                return Refused(413, f"request body over {self.max_body_bytes} bytes")
            self.content_length = int(value)
        return None

    # -- a chunked body ------------------------------------------------------------------------

    def _scan_chunks(self, buf: bytes | bytearray) -> Framed | Refused | None:
        if len(buf) - self.head_end > self.max_raw_body_bytes:
            return Refused(413, "chunked request body too large with its framing")
        while True:
            at = self._chunk_at
            eol = buf.find(CRLF, at)
            if eol < 0:
                if len(buf) - at > MAX_CHUNK_SIZE_LINE:
                    return Refused(400, "chunk size line too long")
                return None
            size_field = bytes(buf[at:eol]).partition(b";")[0].rstrip(b" \t")
            if not size_field or len(size_field) > 16 or not HEX_DIGITS.issuperset(size_field):
                return Refused(400, "bad chunk size")
            size = int(size_field, 16)
            if self._body_bytes + size > self.max_body_bytes:
                return Refused(413, f"request body over {self.max_body_bytes} bytes")
            if size == 0:
                return self._scan_trailers(buf, eol + 2)
            end = eol + 2 + size + 2
            if len(buf) < end:
                return None
            if buf[end - 2:end] != CRLF:
                return Refused(400, "chunk data not followed by CRLF")
            self._body_bytes += size
            self._chunk_at = end

    def _scan_trailers(self, buf: bytes | bytearray, at: int) -> Framed | Refused | None:
        if len(buf) < at + 2:
            return None
        if buf[at:at + 2] == CRLF:
            return Framed(at + 2, True, None)
        idx = buf.find(HEAD_END, at)
        if idx < 0:
            if len(buf) - at > self.max_head_bytes:
                return Refused(431, f"trailer section over {self.max_head_bytes} bytes")
            return None
        return Framed(idx + 4, True, None)
