"""Serve a folder on 127.0.0.1 to requests addressed to this machine only: `make explore`.

    python -m vaepipe.explorer.serve explorer --port 8000

A web page elsewhere can point a name of its own at 127.0.0.1 (DNS rebinding) and read
whatever a local server answers, the run's test images included. The browser still sends
that name as the `Host:` header, so only `127.0.0.1:PORT` and `localhost:PORT` are answered.
"""

from __future__ import annotations

import argparse
import functools
import http.server
import sys
from http import HTTPStatus


class LocalOnlyHandler(http.server.SimpleHTTPRequestHandler):
    hosts: frozenset[str] = frozenset()  # the Host headers answered; set per server

    def parse_request(self) -> bool:
        if not super().parse_request():
            return False
        if self.headers.get("Host", "").lower() not in self.hosts:
            self.send_error(HTTPStatus.MISDIRECTED_REQUEST, "this server answers only 127.0.0.1 and localhost")
            return False
        return True

    def log_message(self, format, *args) -> None:  # noqa: A002 - the base class's name
        pass  # quiet: a request per image would flood the terminal


def server(folder: str, port: int) -> http.server.ThreadingHTTPServer:
    """A server of `folder` on 127.0.0.1:`port` (0 = any free port), not yet serving."""
    handler = type("Handler", (LocalOnlyHandler,), {})  # its own hosts, once the port is known
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", port), functools.partial(handler, directory=folder))
    bound = httpd.server_address[1]
    handler.hosts = frozenset({f"127.0.0.1:{bound}", f"localhost:{bound}"})
    return httpd


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder")
    parser.add_argument("--port", type=int, default=8000)
    args = parser.parse_args(argv)
    try:
        httpd = server(args.folder, args.port)
    except OSError as error:
        sys.exit(f"error: cannot serve on 127.0.0.1:{args.port} ({error.strerror}); choose another PORT")
    with httpd:
        try:
            httpd.serve_forever()
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    main()
