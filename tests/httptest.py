"""Small helpers shared by the tests: run a server in a thread, serve a few static host
pages from another origin (127.0.0.1, another port), and wait for a condition."""
from __future__ import annotations

import threading
import time
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@contextmanager
def serving(server):
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        thread.join(5)


@contextmanager
def host_pages(pages: dict[str, str | tuple[str, bytes]]):
    """Serve {path: html, or (content type, body)} and yield the base URL."""

    class Host(BaseHTTPRequestHandler):
        def do_GET(self):
            page = pages.get(self.path)
            if page is None:
                self.send_error(404)
                return
            kind, data = page if isinstance(page, tuple) else ("text/html", page.encode())
            self.send_response(200)
            self.send_header("Content-Type", f"{kind}; charset=utf-8")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args):
            pass

    with serving(ThreadingHTTPServer(("127.0.0.1", 0), Host)) as server:
        yield f"http://127.0.0.1:{server.server_address[1]}"


def wait_until(predicate, timeout: float = 20.0, step: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(step)
    return False
