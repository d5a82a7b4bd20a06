"""A requests transport adapter that hands requests to a WSGI application in the same process.

Used where esx calls itself without a socket: ``esx init`` registers the demo eUICCs through the
real ES1 endpoint (parser, schema, authorisation, core) this way; an SM-DP calls the SM-SR it is
co-located with over ES3 this way (esx.server.EsxRuntime), so that no request waits for a worker of
its own pool; benchmarks use it to measure the binding without HTTP.

``local_caller`` names the entity every request comes from: the in-process counterpart of a TLS client
certificate (``esx.server.EsxRuntime.caller_for`` trusts it; no HTTP request can set an environ key
that is not ``HTTP_*``).
"""
from __future__ import annotations

import io
from urllib.parse import urlsplit

import requests
from requests.adapters import BaseAdapter
from requests.structures import CaseInsensitiveDict

LOCAL_CALLER = "esx.local_caller"


class WsgiAdapter(BaseAdapter):
    def __init__(self, app, local_caller: str | None = None) -> None:
        super().__init__()
        self.app = app
        self.local_caller = local_caller

    def send(self, request, stream=False, timeout=None, verify=True, cert=None, proxies=None):
        url = urlsplit(request.url)
        body = request.body or b""
        if isinstance(body, str):
            body = body.encode("utf-8")
        environ = {
            "REQUEST_METHOD": request.method,
            "SCRIPT_NAME": "",
            "PATH_INFO": url.path,
            "QUERY_STRING": url.query,
            "SERVER_NAME": url.hostname or "localhost",
            "SERVER_PORT": str(url.port or 80),
            "HTTP_HOST": url.netloc,
            "SERVER_PROTOCOL": "HTTP/1.1",
            "CONTENT_TYPE": request.headers.get("Content-Type", ""),
            "CONTENT_LENGTH": str(len(body)),
            "wsgi.input": io.BytesIO(body),
            "wsgi.errors": io.StringIO(),
            "wsgi.url_scheme": url.scheme,
            "wsgi.version": (1, 0),
            "wsgi.multithread": False,
            "wsgi.multiprocess": False,
            "wsgi.run_once": False,
        }
        for key, value in request.headers.items():
            environ["HTTP_" + key.upper().replace("-", "_")] = value
        if self.local_caller is not None:
            environ[LOCAL_CALLER] = self.local_caller
        captured = {}

        def start_response(status, headers, exc_info=None):
            captured["status"] = status
            captured["headers"] = headers

        chunks = self.app(environ, start_response)
        try:
            content = b"".join(chunks)
        finally:
            close = getattr(chunks, "close", None)
            if close:
                close()
        response = requests.Response()
        response.status_code = int(captured["status"].split()[0])
        response.reason = captured["status"].partition(" ")[2]
        response.headers = CaseInsensitiveDict(captured["headers"])
        response._content = content
        response.url = request.url
        response.request = request
        response.encoding = "utf-8"
        return response

    def close(self) -> None:
        pass
