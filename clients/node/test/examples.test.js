// examples/resolve_gzip.js against a real server: the decoded CSV on stdout is byte for byte the
// CSV of a plain (uncompressed) segments.resolve; an error reply exits 2 with its message.

import { test } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { harness } from "../test-support/server.js";

const EXAMPLE = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..", "examples", "resolve_gzip.js");

/** Runs the example; kills it (and fails) after `timeoutMs`. */
function runExample(args, timeoutMs = 20000) {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [EXAMPLE, ...args], { stdio: ["ignore", "pipe", "pipe"] });
    const out = [];
    const err = [];
    child.stdout.on("data", (d) => out.push(d));
    child.stderr.on("data", (d) => err.push(d));
    const timer = setTimeout(() => {
      child.kill("SIGKILL");
      reject(new Error(`the example did not exit within ${timeoutMs} ms; stderr: ${Buffer.concat(err)}`));
    }, timeoutMs);
    child.on("error", (error) => {
      clearTimeout(timer);
      reject(error);
    });
    child.on("close", (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout: Buffer.concat(out), stderr: Buffer.concat(err).toString("utf8") });
    });
  });
}

test("examples/resolve_gzip.js streams a segment as gzip CSV to stdout; an error reply exits 2", { timeout: 40000 }, async (t) => {
  const { server, connect } = await harness(t);
  const client = await connect();
  await client.call("contacts.upsert", {
    contacts: [
      { email: "ana@example.com", name: 'Ana, "the" first', labels: ["vip", "gold"] },
      { email: "umit@example.com", name: "Ümit 東京", labels: ["vip"] },
      { email: "budi@example.com", name: "line one\nline two", labels: ["vip"], status: "unsubscribed" },
      { email: "citra@example.com", labels: ["vip"] },
      { email: "dewi@example.com", name: "Dewi", labels: ["newsletter"] },
    ],
  });
  const segment = await client.call("segments.create", { name: "VIP contacts", filters: [{ dimension: "label", op: "contains", value: "vip" }] });

  const params = { id: segment.id, format: "csv", audience: "all", columns: ["email", "name", "status", "labels"] };
  // The reference: the CSV text of a plain segments.resolve, as the server sent it.
  const plain = (await client.resolve(params, { raw: true }).collect()).join("");
  assert.equal(plain.split("\r\n").length, 1 + 4 + 1, "header, four contacts (one with a quoted line break), final CRLF");
  assert.ok(plain.includes('"line one\nline two"'));

  const ok = await runExample([server.socket, JSON.stringify(params)]);
  assert.equal(ok.code, 0, `exit status; stderr: ${ok.stderr}`);
  assert.equal(ok.stdout.toString("utf8"), plain);
  assert.equal(JSON.parse(ok.stderr.trim()).rows, 4, "the final reply on stderr");

  // The usage line of the docs: the default columns and audience.
  const usage = await runExample([server.socket, `{"id": ${segment.id}, "format": "csv"}`]);
  assert.equal(usage.code, 0, usage.stderr);
  assert.equal(usage.stdout.toString("utf8"), (await client.resolve({ id: segment.id, format: "csv" }, { raw: true }).collect()).join(""));

  const unknown = await runExample([server.socket, '{"id": 999, "format": "csv"}']);
  assert.equal(unknown.code, 2, `exit status; stderr: ${unknown.stderr}`);
  assert.equal(unknown.stdout.length, 0);
  assert.equal(unknown.stderr.trim(), "error -32001 not_found: no segment with id 999");

  const badColumn = await runExample([server.socket, JSON.stringify({ ...params, columns: ["email", "shoe_size"] })]);
  assert.equal(badColumn.code, 2, badColumn.stderr);
  assert.match(badColumn.stderr.trim(), /^error -32602 invalid_params at columns\[1\]: unknown column "shoe_size"/);

  // Not an error reply: exit 1, with a message.
  const noServer = await runExample([path.join(server.dir, "missing.sock"), "{}"]);
  assert.equal(noServer.code, 1);
  assert.match(noServer.stderr, /cannot connect/);
  const notJson = await runExample([server.socket, "{id: 1}"]);
  assert.equal(notJson.code, 1);
  assert.match(notJson.stderr, /PARAMS is not JSON/);
});
