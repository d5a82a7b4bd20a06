"""esx.serving.framing: where a request ends, fed as plain bytes (no sockets)."""
from __future__ import annotations

import pytest

from esx.serving.framing import Framed, Refused, RequestFramer

MAX_HEAD, MAX_BODY = 1024, 4096


def framer() -> RequestFramer:
    return RequestFramer(MAX_HEAD, MAX_BODY)


def feed_bytewise(data: bytes) -> tuple[int, Framed | Refused | None]:
    """Feed ``data`` one byte at a time, as a slow client would; (bytes fed, first answer)."""
    f, buf = framer(), bytearray()
    for i, b in enumerate(data):
        buf.append(b)
        result = f.scan(buf)
        if result is not None:
            return i + 1, result
    return len(data), None


def post(body: bytes, *extra: str) -> bytes:
    head = ["POST /smsr/es4 HTTP/1.1", "Host: x", f"Content-Length: {len(body)}", *extra]
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


CHUNKED_HEAD = b"POST /smsr/es4 HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"


def test_request_without_body_ends_with_its_head():
    req = b"GET /smsr/es4?wsdl HTTP/1.1\r\nHost: x\r\n\r\n"
    assert framer().scan(req) == Framed(len(req), False, None)


def test_body_of_content_length_fed_byte_by_byte():
    req = post(b"<x/>" * 10)
    assert feed_bytewise(req) == (len(req), Framed(len(req), False, 40))


def test_pipelined_request_is_not_part_of_the_first():
    first = post(b"<a/>")
    assert framer().scan(first + post(b"<b/>")) == Framed(len(first), False, 4)


def test_one_leading_crlf_is_skipped_as_gunicorn_does():
    req = b"\r\n" + post(b"<a/>")
    assert framer().scan(req) == Framed(len(req), False, 4)


def test_head_complete_and_expect_continue_are_known_before_the_body():
    f = framer()
    data = post(b"", "Expect: 100-continue").replace(b"Content-Length: 0", b"Content-Length: 10")
    assert f.scan(data) is None
    assert f.head_complete and f.expect_continue and f.http11 and f.body_expected


@pytest.mark.parametrize("data, status", [
    (b"POST / HTTP/1.1\r\nX: " + b"a" * MAX_HEAD, 431),  # no end of head in sight
    (b"POST / HTTP/1.1\r\nX: " + b"a" * MAX_HEAD + b"\r\n\r\n", 431),
    (b"POST / HTTP/1.1\nHost: x\n\n", 400),  # bare LF
    (post(b"", "Content-Length: 0"), 400),  # two Content-Length
    (post(b"").replace(b"Content-Length: 0", b"Content-Length: +0"), 400),
    (post(b"").replace(b"Content-Length: 0", b"Content-Length : 0"), 400),  # whitespace before the colon
    (post(b"").replace(b"Content-Length: 0", b"Content-Length: 5000"), 413),  # said before any of it is sent
    (post(b"").replace(b"Content-Length: 0", b"Content-Length: " + b"9" * 40), 413),
    (post(b"", "Transfer-Encoding: chunked"), 400),  # both
    (CHUNKED_HEAD.replace(b"chunked", b"gzip"), 400),  # no length can be determined
    (CHUNKED_HEAD.replace(b"chunked", b"chunked, chunked"), 400),
    (CHUNKED_HEAD + b"zz\r\n", 400),  # not hex
    (CHUNKED_HEAD + b"4\r\nabcdXY", 400),  # chunk data not followed by CRLF
    (CHUNKED_HEAD + b"1001\r\n", 413),  # one chunk over the limit: said at its size line
    (CHUNKED_HEAD + b"800\r\n" + b"a" * 0x800 + b"\r\n801\r\n", 413),  # chunks adding up over it
    (CHUNKED_HEAD + b"1" * 5000, 400),  # a size line without end
    (CHUNKED_HEAD + (b"1;" + b"e" * 4000 + b"\r\nx\r\n") * 20, 413),  # framing far larger than its data
])
def test_refused(data, status):
    result = framer().scan(data)
    assert isinstance(result, Refused) and result.status == status, result


def test_refusal_comes_as_soon_as_the_bytes_say_so():
    req = post(b"").replace(b"Content-Length: 0", b"Content-Length: 5000")
    fed, result = feed_bytewise(req + b"a" * 100)
    assert fed == len(req) and result.status == 413


def test_chunked_body_with_extension_and_trailers():
    req = CHUNKED_HEAD + b"4;name=value\r\nabcd\r\n3\r\nefg\r\n0\r\nX-Trailer: 1\r\n\r\n"
    assert framer().scan(req + b"GET / HTTP/1.1\r\n") == Framed(len(req), True, None)
    assert feed_bytewise(req) == (len(req), Framed(len(req), True, None))


def test_chunked_body_without_trailers():
    req = CHUNKED_HEAD + b"A\r\n0123456789\r\n0\r\n\r\n"
    assert feed_bytewise(req) == (len(req), Framed(len(req), True, None))


def test_reset_frames_the_next_request():
    f, first, second = framer(), post(b"<a/>"), CHUNKED_HEAD + b"0\r\n\r\n"
    buf = bytearray(first + second)
    assert f.scan(buf) == Framed(len(first), False, 4)
    del buf[:len(first)]
    f.reset()
    assert f.scan(buf) == Framed(len(second), True, None)


@pytest.mark.parametrize("req", [
    post(b"<x/>" * 10),
    b"\r\n" + post(b"<a/>"),
    b"GET /smsr/es4?wsdl HTTP/1.1\r\nHost: x\r\n\r\n",
    CHUNKED_HEAD + b"4;name=value\r\nabcd\r\n3\r\nefg\r\n0\r\nX-Trailer: 1\r\n\r\n",
    CHUNKED_HEAD + b"A\r\n0123456789\r\n0\r\n\r\n",
])
def test_gunicorn_parser_reads_exactly_the_framed_bytes(req):
    """The worker parses the framed bytes again with gunicorn: both must end the request at the same byte."""
    from gunicorn import http
    from gunicorn.config import Config

    framed = framer().scan(req + b"NEXT")
    assert isinstance(framed, Framed)
    parser = http.get_parser(Config(), [req[:framed.length]], ("127.0.0.1", 1))
    body = next(parser).body.read()
    assert parser.unreader.read() == b""
    if framed.content_length is not None:
        assert len(body) == framed.content_length
    if framed.chunked:
        assert body in (b"abcdefg", b"0123456789")
