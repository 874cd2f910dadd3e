#!/usr/bin/env node
// Streams a segment as gzip CSV and writes the decoded CSV to stdout, with the segmentd client.
//
//   node resolve_gzip.js SOCKET '{"id": 1, "format": "csv"}' > audience.csv
//
// PARAMS are the params of segments.resolve as a JSON object (streams.md); the program adds
// `"compress": "gzip"` (and `"format": "csv"` when they name no format). The client decodes the
// gzip stream and checks it, so stdout gets the CSV exactly as the server wrote it (CRLF line
// ends); the final reply goes to stderr.
//
// Exit status: 0 when the whole audience was written; 2 for an error reply (an unknown segment,
// a bad column, …), printed to stderr as `error CODE TYPE at PATH: MESSAGE` (` at PATH` only when
// the reply names one); 1 for anything else (bad arguments, no server, a connection lost or a
// corrupt stream), with a message. It never hangs on an error reply.

import { once } from "node:events";
import { connect, SegmentdError } from "../index.js";

const USAGE = `usage: node resolve_gzip.js SOCKET PARAMS
  e.g. node resolve_gzip.js ./segmentd.sock '{"id": 1, "format": "csv"}' > audience.csv`;

/** `error -32001 not_found: no segment with id 7`, `error -32602 invalid_params at columns[1]: …` */
function describeErrorReply(error) {
  const where = error.path === null ? "" : ` at ${error.path === "" ? "(params)" : error.path}`;
  return `error ${error.code} ${error.type ?? "error"}${where}: ${error.message}`;
}

/** Writes `text` to stdout, waiting when the pipe is full. */
async function write(text) {
  if (!process.stdout.write(text)) await once(process.stdout, "drain");
}

async function main(argv) {
  if (argv.length !== 2) {
    console.error(USAGE);
    return 1;
  }
  const [socket, paramsText] = argv;
  let params;
  try {
    params = JSON.parse(paramsText);
  } catch (error) {
    console.error(`PARAMS is not JSON: ${error.message}\n${USAGE}`);
    return 1;
  }
  if (params === null || typeof params !== "object" || Array.isArray(params)) {
    console.error(`PARAMS must be a JSON object\n${USAGE}`);
    return 1;
  }

  let client;
  try {
    client = await connect({ socket, reconnect: false });
    const stream = client.resolve({ format: "csv", ...params, compress: "gzip" });
    let pending = "";
    for await (const item of stream) {
      // csv: one record per item (a quoted field may hold a line break); ndjson: a row object.
      pending += typeof item === "string" ? `${item}\r\n` : `${JSON.stringify(item)}\n`;
      if (pending.length >= 64 * 1024) {
        await write(pending);
        pending = "";
      }
    }
    if (pending) await write(pending);
    console.error(JSON.stringify(stream.summary));
    return 0;
  } catch (error) {
    if (error instanceof SegmentdError) {
      console.error(describeErrorReply(error));
      return 2;
    }
    console.error(`segments.resolve failed: ${error.message}`);
    return 1;
  } finally {
    await client?.close();
  }
}

process.stdout.on("error", (error) => {
  // A closed pipe (`| head`): stop quietly; anything else is a failure.
  process.exit(error.code === "EPIPE" ? 0 : 1);
});
process.exitCode = await main(process.argv.slice(2));
