"""An OTLP/HTTP sink for run.sh: answers every POST 200 with an empty body at
once (as the bench's sink in examples/bench/http.rs does) and writes one
`export` line on stderr per request.

    otlp_sink.py PORT
"""
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
class Sink(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length", "0")))
        self.send_response(200); self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", "0"); self.end_headers()
        sys.stderr.write("export\n"); sys.stderr.flush()
    def log_message(self, *a): pass
ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Sink).serve_forever()
