"""The Python SDK's side of Herald's interop matrix (see ../README.md): a producer and a
subscriber written with the SDK's `cloudevents.core` HTTP binding (to_binary / to_structured,
from_http on what the standard library's HTTP server gives), printing what the SDK gives."""

import base64
import json
import sys
import threading
import urllib.request
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from dateutil.parser import isoparse

from cloudevents.core.bindings.http import HTTPMessage, from_http, to_binary, to_structured
from cloudevents.core.formats.json import JSONFormat
from cloudevents.core.v1.event import CloudEvent

FORMAT = JSONFormat()


def read_plan(path):
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def build(planned, mode, event_id=None):
    """A planned event as a CloudEvent. The SDK has no Binary or URI type (they travel as their
    canonical strings), and its binary mode writes a bool as str(True) == "True", not the
    canonical "true", so booleans travel as strings in binary mode."""
    attributes = {"specversion": "1.0"}
    for attribute in planned["attributes"]:
        name, kind, value = attribute["name"], attribute["type"], attribute["value"]
        if kind == "timestamp":
            value = isoparse(value)
        elif kind == "boolean" and mode == "binary":
            value = "true" if value else "false"
        attributes[name] = value
    if event_id is not None:
        attributes["id"] = event_id
    data = None
    if planned.get("data"):
        attributes["datacontenttype"] = planned["data"]["contenttype"]
        if "json" in planned["data"]:
            data = planned["data"]["json"]
        else:
            data = base64.b64decode(planned["data"]["base64"])
    return CloudEvent(attributes, data)


def encode(event, mode):
    return to_binary(event, FORMAT) if mode == "binary" else to_structured(event, FORMAT)


def produce(url, mode, plan_path):
    events = [build(planned, mode) for planned in read_plan(plan_path)["events"]]
    if mode == "batch":
        # the SDK has no batch writer: a JSON array of its structured form
        body = b"[" + b",".join(FORMAT.write(e) for e in events) + b"]"
        requests = [([e.get_id() for e in events], {"content-type": "application/cloudevents-batch+json"}, body)]
    else:
        requests = []
        for event in events:
            message = encode(event, mode)
            requests.append(([event.get_id()], message.headers, message.body))
    for ids, headers, body in requests:
        request = urllib.request.Request(url, data=body, headers=headers, method="POST")
        try:
            with urllib.request.urlopen(request) as response:
                status, text = response.status, response.read().decode("utf-8", "replace")
        except urllib.error.HTTPError as err:
            status, text = err.code, err.read().decode("utf-8", "replace")
        print(json.dumps({"ids": ids, "status": status, "body": text}), flush=True)
        if status // 100 != 2:
            sys.exit(1)


def canonical(event):
    attributes = {}
    for name, value in event.get_attributes().items():
        if value is None:
            continue
        if isinstance(value, datetime):
            value = value.isoformat().replace("+00:00", "Z")
        elif isinstance(value, bool):
            value = "true" if value else "false"
        attributes[name] = str(value)
    return attributes


def data_bytes(event):
    data = event.get_data()
    if data is None:
        return b""
    if isinstance(data, (bytes, bytearray)):
        return bytes(data)
    if isinstance(data, str):
        return data.encode("utf-8")
    return json.dumps(data).encode("utf-8")


def subscribe(port, reply_path):
    reply = read_plan(reply_path)["events"][0]
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):
            pass

        def answer(self, status, headers=None, body=b""):
            self.send_response(status)
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_POST(self):
            mode = self.path.lstrip("/")
            body = self.rfile.read(int(self.headers.get("content-length", 0)))
            record = {"path": self.path}
            try:
                event = from_http(HTTPMessage(dict(self.headers.items()), body), FORMAT)
            except Exception as err:  # the record says what the SDK refused
                record["error"] = repr(err)
                with lock:
                    print(json.dumps(record), flush=True)
                self.answer(400)
                return
            record["events"] = [{
                "attributes": canonical(event),
                "data_base64": base64.b64encode(data_bytes(event)).decode("ascii"),
            }]
            with lock:
                print(json.dumps(record), flush=True)
            name = f"python-{mode}"
            if event.get_extension("replyvia") == name:
                answer = build(reply, mode, f"reply-{event.get_id()}-{name}")
                message = encode(answer, mode)
                self.answer(200, message.headers, message.body)
                return
            self.answer(202)

    server = ThreadingHTTPServer(("127.0.0.1", int(port)), Handler)
    print(f"listening on {port}", file=sys.stderr, flush=True)
    server.serve_forever()


def main():
    args = sys.argv[1:]
    if len(args) == 4 and args[0] == "produce":
        produce(args[1], args[2], args[3])
    elif len(args) == 3 and args[0] == "subscribe":
        subscribe(args[1], args[2])
    else:
        sys.exit("usage: interop.py produce URL MODE PLAN | interop.py subscribe PORT REPLY")


if __name__ == "__main__":
    main()
