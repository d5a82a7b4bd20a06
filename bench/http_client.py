"""Benchmark: CPU per POST of esx's HTTP client (esx.binding.http.HttpClient) next to a requests.Session and
urllib3's PoolManager, in one run, against one local HTTP/1.1 receiver in another process.

Each client POSTs the same 2 kB SOAP-sized body over a kept-alive connection, one after the other, ``--posts``
times after a warm-up; the figure is this process's CPU (user + system) per POST, so the receiver's work is not in
it. Why it matters: a profile download makes about twenty POSTs between esx's processes (ES3 requests, callbacks,
notifications); BENCHMARKS.md, issue 10, third round.

    .venv/bin/python bench/http_client.py            # 5000 POSTs per client
    .venv/bin/python bench/http_client.py --smoke    # a second, no timings checked (tests/bench/test_smoke.py)
"""
from __future__ import annotations

import argparse
import json
import multiprocessing
import resource
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

BODY = b"<env:Envelope>" + b"x" * 2000 + b"</env:Envelope>"
CONTENT_TYPE = "application/soap+xml; charset=utf-8"


def _receiver(port_out) -> None:
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self):  # noqa: N802
            self.rfile.read(int(self.headers["Content-Length"]))
            self.send_response(202)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    port_out.put(server.server_address[1])
    server.serve_forever()


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def measure(post, posts: int) -> dict:
    for _ in range(min(50, posts)):
        assert post() == 202
    cpu, wall = _cpu(), time.perf_counter()
    for _ in range(posts):
        assert post() == 202
    cpu, wall = _cpu() - cpu, time.perf_counter() - wall
    return {"posts": posts, "cpu_us_per_post": round(cpu / posts * 1e6, 1), "wall_us_per_post": round(wall / posts * 1e6, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--posts", type=int, default=5000)
    parser.add_argument("--smoke", action="store_true", help="a second: 50 POSTs per client, no timings checked")
    args = parser.parse_args()
    posts = 50 if args.smoke else args.posts

    import requests
    import urllib3

    from esx.binding.http import HttpClient

    ports: multiprocessing.Queue = multiprocessing.Queue()
    receiver = multiprocessing.Process(target=_receiver, args=(ports,), daemon=True)
    receiver.start()
    try:
        url = f"http://127.0.0.1:{ports.get(timeout=10)}/smdp/es3"
        session, pool, esx_http = requests.Session(), urllib3.PoolManager(), HttpClient()
        clients = {
            "requests.Session": lambda: session.post(url, data=BODY, headers={"Content-Type": CONTENT_TYPE},
                                                     timeout=10).status_code,
            "urllib3.PoolManager": lambda: pool.request("POST", url, body=BODY, headers={"Content-Type": CONTENT_TYPE},
                                                        timeout=10, retries=False).status,
            "esx HttpClient": lambda: esx_http.post(url, BODY, content_type=CONTENT_TYPE, timeout=10).status_code,
        }
        results = {name: measure(post, posts) for name, post in clients.items()}
    finally:
        receiver.terminate()
    for name, r in results.items():
        print(f"{name:22} {r['cpu_us_per_post']:8.1f} us CPU per POST  ({r['wall_us_per_post']:.1f} us wall)")
    print("RESULTS_JSON " + json.dumps({"clients": results}))


if __name__ == "__main__":
    main()
