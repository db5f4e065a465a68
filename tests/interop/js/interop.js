// The JavaScript SDK's side of Herald's interop matrix (see ../README.md): a producer and a
// subscriber written the way the SDK's documentation shows (HTTP.binary / HTTP.structured over
// Node's http module, HTTP.toEvent on what Node's server gives), printing what the SDK gives.
"use strict";

const fs = require("fs");
const http = require("http");
const { CloudEvent, HTTP } = require("cloudevents");

function readPlan(path) {
  return JSON.parse(fs.readFileSync(path, "utf8"));
}

// A planned event as a CloudEvent. The SDK has no Binary, URI or Timestamp extension type
// that survives its HTTP binding (a Uint8Array becomes "0,1,2" in a header, a Date its
// toString()), so those travel in their canonical string form, as the SDK's docs advise.
function build(planned, id) {
  const properties = {};
  for (const { name, type, value } of planned.attributes) {
    properties[name] = value;
    if (type === "timestamp" && name === "time") properties[name] = new Date(value).toISOString();
  }
  if (id) properties.id = id;
  const data = planned.data;
  if (data) {
    properties.datacontenttype = data.contenttype;
    properties.data = data.json !== undefined ? data.json : new Uint8Array(Buffer.from(data.base64, "base64"));
  }
  return new CloudEvent(properties);
}

function post(url, message) {
  return new Promise((resolve, reject) => {
    const request = http.request(url, { method: "POST", headers: message.headers }, (response) => {
      let body = "";
      response.setEncoding("utf8");
      response.on("data", (chunk) => (body += chunk));
      response.on("end", () => resolve({ status: response.statusCode, body }));
    });
    request.on("error", reject);
    request.end(message.body);
  });
}

async function produce(url, mode, planPath) {
  const events = readPlan(planPath).events.map((planned) => build(planned));
  const messages =
    mode === "batch"
      ? [{ ids: events.map((e) => e.id), headers: { "content-type": "application/cloudevents-batch+json" }, body: JSON.stringify(events) }]
      : events.map((e) => ({ ids: [e.id], ...(mode === "binary" ? HTTP.binary(e) : HTTP.structured(e)) }));
  for (const message of messages) {
    const { status, body } = await post(url, message);
    console.log(JSON.stringify({ ids: message.ids, status, body }));
    if (status < 200 || status > 299) process.exit(1);
  }
}

function canonical(event) {
  const attributes = {};
  for (const [name, value] of Object.entries(event)) {
    if (name === "data" || name === "data_base64" || value === undefined) continue;
    attributes[name] = value instanceof Date ? value.toISOString() : String(value);
  }
  return attributes;
}

function dataBytes(event) {
  if (event.data_base64) return Buffer.from(event.data_base64, "base64");
  const data = event.data;
  if (data === undefined || data === null) return Buffer.alloc(0);
  // structured data_base64 arrives as a Uint32Array with one byte per element
  if (ArrayBuffer.isView(data)) return Buffer.from(Array.from(data));
  if (typeof data === "string") return Buffer.from(data, "utf8");
  return Buffer.from(JSON.stringify(data), "utf8");
}

function subscribe(port, replyPath) {
  const reply = readPlan(replyPath).events[0];
  const server = http.createServer((req, res) => {
    const chunks = [];
    req.on("data", (chunk) => chunks.push(chunk));
    req.on("end", () => {
      const mode = req.url.replace(/^\//, "");
      const raw = Buffer.concat(chunks);
      const json = /json/.test(req.headers["content-type"] || "");
      const record = { path: req.url };
      let events;
      try {
        const parsed = HTTP.toEvent({ headers: req.headers, body: json ? raw.toString("utf8") : raw });
        events = Array.isArray(parsed) ? parsed : [parsed];
      } catch (err) {
        record.error = String(err && err.message ? err.message : err) + JSON.stringify(err.errors || []);
        console.log(JSON.stringify(record));
        res.writeHead(400).end();
        return;
      }
      record.events = events.map((e) => ({ attributes: canonical(e), data_base64: dataBytes(e).toString("base64") }));
      console.log(JSON.stringify(record));
      const name = `js-${mode}`;
      const event = events[0];
      if (event.replyvia === name) {
        const answer = build(reply, `reply-${event.id}-${name}`);
        const message = mode === "structured" ? HTTP.structured(answer) : HTTP.binary(answer);
        res.writeHead(200, message.headers);
        res.end(message.body);
        return;
      }
      res.writeHead(202).end();
    });
  });
  server.listen(Number(port), "127.0.0.1", () => console.error(`listening on ${port}`));
}

const [command, a, b, c] = process.argv.slice(2);
if (command === "produce" && c) {
  produce(a, b, c).catch((err) => {
    console.error(err);
    process.exit(2);
  });
} else if (command === "subscribe" && b) {
  subscribe(a, b);
} else {
  console.error("usage: interop.js produce URL MODE PLAN | interop.js subscribe PORT REPLY");
  process.exit(2);
}
