"""esx.binding.soap: a request to a synchronous operation is served without spyne's per-request machinery
(``GsmaWsgiApplication._serve_direct``), and answers with the same status, headers and bytes as spyne's own path."""
from __future__ import annotations

import io
import re
import uuid

import pytest
from lxml import etree
from spyne.server.wsgi import WsgiApplication

from esx.binding import contract, wsa
from esx.binding.ns import GSMA, SOAP12, WSA
from esx.demo import demo_eid
from esx.server import make_wsgi

from .inprocess import InProcess, request


@pytest.fixture(scope="module")
def es4(tmp_path_factory):
    inst = InProcess(tmp_path_factory.mktemp("direct"))
    yield inst, make_wsgi(inst.config, "smsr", inst.runtime).apps["/smsr/es4"]
    inst.close()


def _envelope(body: etree._Element, caller: str | None, drop: str | None = None) -> bytes:
    op = contract.load_service("ES4SmSr.wsdl").by_input_element()[body.tag]
    env = etree.Element(f"{{{SOAP12}}}Envelope", nsmap={"env": SOAP12, "wsa": WSA, "rps": GSMA})
    header = etree.SubElement(env, f"{{{SOAP12}}}Header")
    wsa.write_addressing(header, wsa.Addressing(
        from_address=wsa.entity_address("http://caller.example/", caller) if caller else "http://caller.example/",
        to="http://esx.test/smsr/es4", message_id=f"urn:uuid:{uuid.uuid4()}", action=op.input_action))
    if drop:
        header.remove(header.find(f"{{{WSA}}}{drop}"))
    etree.SubElement(env, f"{{{SOAP12}}}Body").append(body)
    return etree.tostring(env)


def _serve(call, data: bytes) -> tuple[str, list, bytes]:
    environ = {"REQUEST_METHOD": "POST", "PATH_INFO": "/smsr/es4", "QUERY_STRING": "", "SERVER_NAME": "esx.test",
               "SERVER_PORT": "80", "HTTP_HOST": "esx.test", "CONTENT_TYPE": "application/soap+xml; charset=utf-8",
               "CONTENT_LENGTH": str(len(data)), "wsgi.input": io.BytesIO(data), "wsgi.url_scheme": "http"}
    got = []
    body = b"".join(call(environ, lambda status, headers, exc_info=None: got.append((status, sorted(headers)))))
    # the response's own MessageID and the processing times differ from call to call
    body = re.sub(rb"<wsa:MessageID>[^<]*", b"<wsa:MessageID>", body)
    return got[0][0], got[0][1], re.sub(rb"(Processing(?:Start|End)>)[^<]*", rb"\1", body)


@pytest.mark.parametrize("case", ["success", "unknown EID", "schema-invalid body", "unknown caller",
                                  "missing wsa:Action"])
def test_the_direct_path_answers_as_spyne_does(es4, case, monkeypatch):
    inst, app = es4
    mno = inst.doc["mno_id"]
    body, caller, drop = {
        "success": (request("ES4-GetEISRequest", ("Eid", demo_eid(1))), mno, None),
        "unknown EID": (request("ES4-GetEISRequest", ("Eid", "89" + "0" * 30)), mno, None),
        "schema-invalid body": (request("ES4-GetEISRequest", ("Eid", "XYZ")), mno, None),
        "unknown caller": (request("ES4-GetEISRequest", ("Eid", demo_eid(1))), "1.2.3.4.5", None),
        "missing wsa:Action": (request("ES4-GetEISRequest", ("Eid", demo_eid(1))), mno, "Action"),
    }[case]
    data = _envelope(body, caller, drop)
    spyne_calls = []
    real = WsgiApplication.handle_rpc
    monkeypatch.setattr(WsgiApplication, "handle_rpc", lambda self, *a: spyne_calls.append(1) or real(self, *a))
    direct = _serve(app, data)
    assert spyne_calls == []  # served without spyne
    through_spyne = _serve(lambda env, sr: WsgiApplication.__call__(app, env, sr), data)
    assert spyne_calls == [1]
    assert direct == through_spyne
    assert direct[0] == "200 OK" and (b"EXECUTED_SUCCESS" in direct[2]) == (case == "success")


def test_what_the_direct_path_declines_goes_to_spyne_with_its_body(es4, monkeypatch):
    _, app = es4
    spyne_calls = []
    real = WsgiApplication.handle_rpc
    monkeypatch.setattr(WsgiApplication, "handle_rpc", lambda self, *a: spyne_calls.append(1) or real(self, *a))
    status, _, body = _serve(app, b"<not-xml")
    assert status == "400 Bad Request" and b"XML not well-formed" in body and spyne_calls == [1]


@pytest.mark.parametrize("case", ["accepted", "replayed", "refused by callback", "unknown caller", "schema-invalid body"])
def test_a_one_way_request_is_answered_directly_as_spyne_does(es4, case, monkeypatch):
    """One-way operations (ES4-AuditEIS here): accepted 202 with no body, a refusal by callback is 202 too, and a
    refusal nobody can be called back about is the same fault as spyne's."""
    inst, app = es4
    mno = inst.doc["mno_id"]
    eid = demo_eid(1) if case != "refused by callback" else "89" + "0" * 30
    body = request("ES4-AuditEISRequest", ("Eid", eid if case != "schema-invalid body" else "XYZ"))
    caller = "1.2.3.4.5" if case == "unknown caller" else mno
    data, data2 = _envelope(body, caller), _envelope(body, caller)
    spyne_calls = []
    real = WsgiApplication.handle_rpc
    monkeypatch.setattr(WsgiApplication, "handle_rpc", lambda self, *a: spyne_calls.append(1) or real(self, *a))
    direct = _serve(app, data)
    assert spyne_calls == []  # served without spyne
    # spyne's answer to the same request (a replay for the SM-SR: the same answer) and, for "replayed", to a second
    # message with the same FunctionCallIdentifier
    through_spyne = _serve(lambda env, sr: WsgiApplication.__call__(app, env, sr), data2 if case == "replayed" else data)
    assert spyne_calls == [1]
    if case == "replayed":
        direct = _serve(app, data2)
    assert direct == through_spyne
    status = direct[0]
    if case in ("accepted", "replayed", "refused by callback"):
        assert (status, direct[2]) == ("202 Accepted", b"")
    else:
        assert status == "400 Bad Request" and b"env:Fault" in direct[2]
