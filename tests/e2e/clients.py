"""zeep clients as an operator builds them: from the official GSMA WSDL, or from ours (served)."""
from __future__ import annotations

import uuid

import requests
import zeep
from zeep import Plugin
from zeep.transports import Transport

from .conftest import OFFICIAL, SoapReply, official_schema, parse_reply

OFFICIAL_FILES = {"ES1": "ES1_SMSR.wsdl", "ES2": "ES2_SMDP.wsdl", "ES3": "ES3_SMSR.wsdl", "ES4": "ES4_SMSR.wsdl"}
_CACHE: dict[tuple[str, str], zeep.Client] = {}


class Recorder(Plugin):
    """Keeps the last envelope the client sent (zeep fills MessageID, To and Action itself)."""

    def __init__(self) -> None:
        self.last = None

    def egress(self, envelope, http_headers, operation, binding_options):
        self.last = envelope
        return envelope, http_headers


def _client(source: str, **kw) -> zeep.Client:
    return zeep.Client(source, plugins=[Recorder()], **kw)


class Caller:
    """Calls one endpoint as one entity; every reply is checked against the official XSD."""

    def __init__(self, client: zeep.Client, endpoint: str, interface: str, entity_oid: str | None) -> None:
        self.client = client
        self.service = client.create_service(next(iter(client.wsdl.bindings)), endpoint)
        self.endpoint = endpoint
        self.interface = interface
        self.entity_oid = entity_oid
        binding = client.wsdl.bindings[next(iter(client.wsdl.bindings))]
        self.actions = {name: op.abstract.wsa_action for name, op in binding._operations.items()}

    def headers(self, op: str, **override) -> dict:
        """What an operator adds: wsa:From (zeep itself adds To, MessageID and Action)."""
        hdr = {"From": {"Address": f"http://caller.example/?EntityId={self.entity_oid}"} if self.entity_oid else None}
        hdr.update(override)
        return {k: v for k, v in hdr.items() if v is not None}

    @property
    def last_message_id(self) -> str | None:
        env = self.client.plugins[0].last
        el = env.find("{http://www.w3.org/2003/05/soap-envelope}Header/{http://www.w3.org/2005/08/addressing}MessageID")
        return el.text if el is not None else None

    def send_async(self, op: str, *, reply_to: str | None = None, **params) -> tuple[int, bytes, str]:
        """A one-way request; returns (HTTP status, body, the wsa:MessageID zeep sent)."""
        params.setdefault("FunctionCallIdentifier", str(uuid.uuid4()))
        headers = self.headers(op, **({"ReplyTo": {"Address": reply_to}} if reply_to else {}))
        with self.client.settings(raw_response=True):
            response = self.service[op](_soapheaders=headers, **params)
        return response.status_code, response.content, self.last_message_id

    def __call__(self, op: str, _headers: dict | None = None, **params) -> SoapReply:
        params.setdefault("FunctionCallIdentifier", str(uuid.uuid4()))
        with self.client.settings(raw_response=True):
            response = self.service[op](_soapheaders=_headers or self.headers(op), **params)
        return parse_reply(response, self.interface)


def official(interface: str, endpoint: str, entity_oid: str | None) -> Caller:
    """A client generated from the official GSMA WSDL (skips when the set is absent)."""
    official_schema(interface)  # skips with the reason when the files are absent
    key = ("official", interface)
    if key not in _CACHE:
        _CACHE[key] = _client(str(OFFICIAL / OFFICIAL_FILES[interface]))
    return Caller(_CACHE[key], endpoint, interface, entity_oid)


def ours(interface: str, endpoint: str, entity_oid: str | None) -> Caller:
    """A client generated from the WSDL esx serves at ``<endpoint>?wsdl``."""
    key = ("ours", endpoint)
    if key not in _CACHE:
        _CACHE[key] = _client(f"{endpoint}?wsdl", transport=Transport(session=requests.Session()))
    return Caller(_CACHE[key], endpoint, interface, entity_oid)


CLIENT_KINDS = {"official": official, "ours": ours}


def raw_post(endpoint: str, data: bytes, content_type: str = "application/soap+xml; charset=utf-8") -> requests.Response:
    return requests.post(endpoint, data=data, headers={"Content-Type": content_type}, timeout=30)
