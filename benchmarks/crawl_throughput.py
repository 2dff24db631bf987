"""Crawl throughput of the web source on a 2,000-page loopback documentation site.

The site runs in its own process (stdlib ``ThreadingHTTPServer``, HTTP/1.1 keep-alive): an
index, 40 section pages and 1,959 leaf pages, Sphinx-shaped (navigation, a sidebar, a
highlighted code block with line numbers, ~5 KB each), every page answering ``ETag`` and
``If-None-Match`` with a 304. The real daemon runs the source as it always does: ``POST
/v1/sources/site/fetch`` queues a ``source.fetch`` job in a child process; the clock runs from
that request until the job is final (polled every 50 ms; the job's own started/finished times
are reported too). Politeness off: ``requests_per_second`` 100,000; robots.txt allows all.

1. First crawl: pages/s.
2. Re-crawl of the unchanged site: every page must answer 304 and nothing may be added; the
   figure is the time ratio re-crawl / first crawl.

Baseline: the HTTP floor, the same 2,000 URLs fetched by one plain ``httpx.Client`` loop in
this process (no parsing, no storage); reported as crawler time / floor time.

    .venv/bin/python benchmarks/crawl_throughput.py [--pages 2000] [--concurrency 4]
"""

from __future__ import annotations

import argparse
import hashlib
import html
import json
import multiprocessing
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _harness import Daemon

SECTIONS = 40
CODE = '''def handler_{n}(request, *, retries=3):
    """Answer request {n}; retry on transient errors."""
    for attempt in range(retries):

        try:
            return dispatch(request, attempt)
        except Transient as exc:  # <{n}> & "{n}"
            log.warning("retry %d: %s", attempt, exc)
    raise GaveUp({n})
'''


def site_paths(pages: int) -> list[str]:
    leaves = pages - 1 - SECTIONS
    paths = ["/docs/index.html"] + [f"/docs/s{s}/index.html" for s in range(SECTIONS)]
    return paths + [f"/docs/s{i % SECTIONS}/p{i}.html" for i in range(leaves)]


def render(path: str, pages: int) -> bytes:
    """A Sphinx-shaped page with navigation around the main container."""
    leaves = pages - 1 - SECTIONS
    if path == "/docs/index.html":
        links = [f"s{s}/index.html" for s in range(SECTIONS)]
    elif path.endswith("/index.html"):
        s = int(path.split("/")[2][1:])
        links = [f"p{i}.html" for i in range(s, leaves, SECTIONS)] + ["../index.html"]
    else:
        i = int(path.rsplit("/p", 1)[1].split(".")[0])
        siblings = [j for j in (i - SECTIONS, i + SECTIONS) if 0 <= j < leaves]
        links = [f"p{j}.html" for j in siblings] + ["index.html", "../index.html"]
    nav = "".join(f'<li><a href="{href}">{href}</a></li>' for href in links)
    n = abs(hash(path)) % 10_000
    lines = CODE.format(n=n).splitlines(keepends=True)
    linenos = "\n".join(f'<span class="normal">{k}</span>' for k in range(1, len(lines) + 1))
    code = html.escape("".join(lines))
    prose = " ".join(f"Paragraph about {path} and topic {k}." for k in range(20))
    return (
        f"<!DOCTYPE html><html><head><title>{path}</title></head><body>"
        f'<div class="related" role="navigation"><ul>{nav}</ul></div>'
        f'<div class="document"><div class="body" role="main"><section><h1>{path}'
        f'<a class="headerlink" href="#">¶</a></h1><p>{prose}</p>'
        f'<div class="highlight-python notranslate"><table class="highlighttable"><tr>'
        f'<td class="linenos"><div class="linenodiv"><pre>{linenos}</pre></div></td>'
        f'<td class="code"><div class="highlight"><pre><span></span>{code}</pre></div></td>'
        f"</tr></table></div><p>{prose}</p></section></div>"
        f'<div class="sphinxsidebar" role="navigation"><h3>Navigation</h3><ul>{nav}</ul></div>'
        f'</div><div class="footer">Powered by Sphinx</div></body></html>'
    ).encode()


def serve(pages: int, port_out: Any, ready: Any) -> None:
    """The site, in its own process; ``/__stats`` returns the status counts of page requests."""
    bodies = {p: render(p, pages) for p in site_paths(pages)}
    tags = {p: f'"{hashlib.sha1(b).hexdigest()[:16]}"' for p, b in bodies.items()}
    counts: dict[int, int] = {}
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True  # else headers and body wait on delayed ACKs (40 ms)

        def do_GET(self) -> None:
            if self.path == "/__stats":
                return self._send(200, json.dumps(counts).encode(), "application/json")
            if self.path == "/robots.txt":
                return self._send(200, b"User-agent: *\nDisallow:\n", "text/plain")
            body = bodies.get(self.path)
            if body is None:
                return self._send(404, b"not found", "text/plain")
            if self.headers.get("If-None-Match") == tags[self.path]:
                return self._send(304, b"", None, tags[self.path])
            return self._send(200, body, "text/html; charset=utf-8", tags[self.path])

        def _send(self, code: int, body: bytes, ctype: str | None, etag: str = "") -> None:
            if self.path.startswith("/docs/"):  # pages only, not robots.txt
                with lock:
                    counts[code] = counts.get(code, 0) + 1
            self.send_response(code)
            if ctype:
                self.send_header("Content-Type", ctype)
            if etag:
                self.send_header("ETag", etag)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    port_out.value = server.server_address[1]
    ready.set()
    server.serve_forever()


def stats(base: str, since: dict[str, int] | None = None) -> dict[str, int]:
    now = {str(k): v for k, v in httpx.get(f"{base}/__stats").json().items()}
    return {k: v - (since or {}).get(k, 0) for k, v in now.items() if v - (since or {}).get(k, 0)}


def crawl(d: Daemon, base: str) -> tuple[float, dict[str, Any]]:
    """Queue a fetch, wait for the job; (wall seconds, the job)."""
    t0 = time.perf_counter()
    job = d.client().post("/v1/sources/site/fetch").json()
    while job["state"] not in ("succeeded", "failed", "cancelled", "skipped"):
        time.sleep(0.05)
        job = d.get(f"/v1/jobs/{job['id']}").json()
    return time.perf_counter() - t0, job


def floor(base: str, pages: int) -> float:
    with httpx.Client() as client:
        t0 = time.perf_counter()
        for path in site_paths(pages):
            client.get(base + path).raise_for_status()
        return time.perf_counter() - t0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pages", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=4)
    args = parser.parse_args()
    port, ready = multiprocessing.Value("i", 0), multiprocessing.Event()
    server = multiprocessing.Process(target=serve, args=(args.pages, port, ready), daemon=True)
    server.start()
    ready.wait(60)
    base = f"http://127.0.0.1:{port.value}"
    source = {
        "name": "site",
        "type": "web",
        "urls": [f"{base}/docs/index.html"],
        "enabled": False,  # only the fetches this script asks for
        "max_pages": args.pages * 2,
        "max_depth": 10,
        "requests_per_second": 100_000,
        "concurrency": args.concurrency,
    }
    print(f"site: {args.pages} pages, ~{len(render('/docs/s1/p41.html', args.pages))} B each;")
    print(f"crawler: concurrency {args.concurrency}, politeness off")
    try:
        with Daemon({"sources": [source]}, name="crawl") as d:
            d.start()
            before = stats(base)
            first_s, first = crawl(d, base)
            first_http = stats(base, before)
            second_s, second = crawl(d, base)
            second_http = stats(
                base,
                {k: before.get(k, 0) + first_http.get(k, 0) for k in set(before) | set(first_http)},
            )
            report("first crawl", first_s, first, first_http, args.pages)
            report("re-crawl", second_s, second, second_http, args.pages)
            unchanged = second["result"].get("unchanged", 0)
            all_304 = second_http == {"304": args.pages} and not second["result"].get("added")
            print(
                f"re-crawl / first crawl: {second_s / first_s:.2f}x time"
                f" ({'all 304, nothing added' if all_304 else 'NOT all 304'};"
                f" {unchanged} unchanged)"
            )
            floor_s = floor(base, args.pages)
            print(
                f"HTTP floor (one httpx client, GET only): {args.pages / floor_s:.0f} pages/s;"
                f" first crawl is {first_s / floor_s:.1f}x the floor's time"
            )
            docs = d.status()["documents"]["by_source"].get("web:site", 0)
            print(f"documents stored for the source: {docs}")
    finally:
        server.terminate()
    return 0


def report(label: str, wall: float, job: dict[str, Any], http: dict[str, int], pages: int) -> None:
    result = job.get("result") or {}
    in_job = (job["finished"] or 0) - (job["started"] or 0)
    counts = {k: result.get(k, 0) for k in ("added", "updated", "unchanged", "failed")}
    print(
        f"{label}: {wall:.2f} s wall, {pages / wall:.0f} pages/s"
        f" (job process {in_job:.2f} s, {pages / in_job:.0f} pages/s); job {job['state']},"
        f" {counts}; HTTP {http}"
    )


if __name__ == "__main__":
    sys.exit(main())
