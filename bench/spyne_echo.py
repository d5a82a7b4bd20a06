"""The framework floor for bench/es4_get_eis.py: a bare spyne 2.14 SOAP 1.2 echo.

One bare ``AnyXml`` method whose in-message is ``{http://namespaces.gsma.org/esim-messaging/3}
ES4-GetEISRequest``; it returns the body element it was given (inside spyne's
``es4_get_eisResponse`` wrapper). No validation, no WS-Addressing,
no database: what remains is HTTP (gunicorn sync worker), spyne's envelope parsing and dispatch,
and serialising an envelope back. Fed the same request bytes as esx, it tells how much of esx's
time per request is the framework and how much is esx.

Serve it with gunicorn as esx is served (sync workers), e.g.::

    .venv/bin/gunicorn --chdir bench -w 2 -k sync -b 127.0.0.1:8099 spyne_echo:application
"""
from __future__ import annotations

from spyne import AnyXml, Application, ServiceBase, rpc
from spyne.protocol.soap import Soap12
from spyne.server.wsgi import WsgiApplication

GSMA = "http://namespaces.gsma.org/esim-messaging/3"


class EchoService(ServiceBase):
    @rpc(AnyXml, _returns=AnyXml, _body_style="bare", _in_message_name="ES4-GetEISRequest")
    def es4_get_eis(ctx, request):
        # spyne hands a bare AnyXml argument the body element's first child; echo the whole
        # body element (ES4-GetEISRequest) instead.
        return ctx.in_body_doc


application = WsgiApplication(
    Application([EchoService], tns=GSMA, name="Es4Echo", in_protocol=Soap12(), out_protocol=Soap12())
)
