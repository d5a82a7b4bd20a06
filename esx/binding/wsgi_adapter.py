"""A requests transport adapter that hands requests to a WSGI application in the same process.

For clients built on ``requests`` (zeep clients of the tests and benchmarks, which measure the binding without
HTTP); esx's own client (esx.binding.http.HttpClient.mount) does the same for what esx sends to itself.

``local_caller`` names the entity every request comes from: the in-process counterpart of a TLS client
certificate (``esx.server.EsxRuntime.caller_for`` trusts it; no HTTP request can set an environ key
that is not ``HTTP_*``).
"""
from __future__ import annotations

import requests
from requests.adapters import BaseAdapter
from requests.structures import CaseInsensitiveDict

from .http import call_wsgi


class WsgiAdapter(BaseAdapter):
    def __init__(self, app, local_caller: str | None = None) -> None:
        super().__init__()
        self.app = app
        self.local_caller = local_caller

    def send(self, request, stream=False, timeout=None, verify=True, cert=None, proxies=None):
        body = request.body or b""
        if isinstance(body, str):
            body = body.encode("utf-8")
        status, headers, content = call_wsgi(self.app, request.method, request.url, body, dict(request.headers),
                                             self.local_caller)
        response = requests.Response()
        response.status_code = int(status.split()[0])
        response.reason = status.partition(" ")[2]
        response.headers = CaseInsensitiveDict(headers)
        response._content = content
        response.url = request.url
        response.request = request
        response.encoding = "utf-8"
        return response

    def close(self) -> None:
        pass
