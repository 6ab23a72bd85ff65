"""`make web`: serve the reference client in web/ on http://localhost:5173.

The standard library's file server, with one change: every response says `no-cache`, so an
edited page or module shows on the next reload instead of a stale copy from the browser cache.
A path without a file extension (`/verify-email?token=...`, the emailed links) is a directory
of web/ and gets its index.html.
"""

import argparse
import functools
import http.server
from pathlib import Path


class Handler(http.server.SimpleHTTPRequestHandler):
    def end_headers(self) -> None:
        self.send_header("Cache-Control", "no-cache")
        super().end_headers()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bind", default="127.0.0.1", help="address to listen on")
    parser.add_argument("--port", type=int, default=5173)
    parser.add_argument("--directory", default=str(Path(__file__).parent.parent / "web"))
    args = parser.parse_args()
    handler = functools.partial(Handler, directory=args.directory)
    with http.server.ThreadingHTTPServer((args.bind, args.port), handler) as server:
        print(f"Serving {args.directory} on http://localhost:{args.port}", flush=True)
        server.serve_forever()


if __name__ == "__main__":
    main()
