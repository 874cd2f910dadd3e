#!/usr/bin/env node
// Streams a segment as gzip over the socket and writes the decoded rows to stdout.
//
//   node resolve_gzip.js segmentd.sock '{"id": 1, "format": "csv"}' > audience.csv
//
// Standard library only. The final result goes to stderr. An error reply, a truncated gzip
// stream or a connection that ends before the final reply is reported on stderr with exit
// status 1: never a hang.
"use strict";
const net = require("net"), zlib = require("zlib"), readline = require("readline");

function resolveGzip(sockPath, params, out) {
  return new Promise((resolve, reject) => {
    const sock = net.connect(sockPath);
    const gunzip = zlib.createGunzip();
    let final = null, failed = false;
    const fail = (error) => {
      if (failed) return;
      failed = true;
      sock.destroy();
      gunzip.destroy();
      reject(error);
    };
    gunzip.on("data", (chunk) => out.write(chunk));
    gunzip.on("error", fail); // a truncated or corrupt gzip stream
    gunzip.on("end", () => resolve(final));
    sock.on("error", fail);
    sock.on("close", () => { if (final === null) fail(new Error("the connection ended before the final reply")); });
    sock.write(JSON.stringify({jsonrpc: "2.0", id: 1, method: "segments.resolve",
      params: {...params, compress: "gzip"}}) + "\n");
    readline.createInterface({input: sock, crlfDelay: Infinity}).on("line", (line) => {
      const m = JSON.parse(line);
      if (m.method === "segments.rows") gunzip.write(Buffer.from(m.params.gzip, "base64"));
      else if (m.id === 1) {
        if (m.error) return fail(new Error("error reply " + JSON.stringify(m.error)));
        final = m.result;
        gunzip.end(); // 'end' follows once the last bytes are out, or 'error' if truncated
        sock.destroy();
      }
    });
  });
}

if (require.main === module) {
  const sockPath = process.argv[2] || "segmentd.sock";
  const params = JSON.parse(process.argv[3] || '{"id": 1, "format": "csv"}');
  resolveGzip(sockPath, params, process.stdout).then(
    (result) => console.error(JSON.stringify(result)),
    (error) => { console.error("segments.resolve:", error.message); process.exitCode = 1; });
}
