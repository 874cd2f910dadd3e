// Regressions from a review: nothing may hang or leak an in-flight slot.
// `"id": null` replies, unserialisable params, a server that never answers rpc.hello, close() of a
// live-only subscription while the server is unreachable, `reconnect: false` subscriptions, a
// corrupt gzip chunk, the token in util.inspect, stream.cancel() before the request is sent.

import { test } from "node:test";
import assert from "node:assert/strict";
import fs from "node:fs";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import util from "node:util";
import zlib from "node:zlib";
import { Client, connect, SegmentdConnectionError, SegmentdProtocolError } from "../index.js";
import { harness, waitFor } from "../test-support/server.js";

/** Fails the test instead of hanging: the promise must settle within `ms`. */
function settles(promise, ms = 5000, what = "promise") {
  let timer;
  return Promise.race([
    promise,
    new Promise((_, reject) => { timer = setTimeout(() => reject(new Error(`${what} still pending after ${ms} ms`)), ms); }),
  ]).finally(() => clearTimeout(timer));
}

/**
 * A fake server on a Unix socket in a temp dir: `onRequest(message, write, socket)` handles each
 * request line (`write(obj)` sends one line). Closed (and its dir removed) after the test.
 */
async function fakeServer(t, onRequest) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "sgd-fake-"));
  const socketPath = path.join(dir, "s.sock");
  const sockets = new Set();
  const server = net.createServer((socket) => {
    sockets.add(socket);
    socket.on("close", () => sockets.delete(socket));
    socket.on("error", () => {});
    socket.setEncoding("utf8");
    let buf = "";
    socket.on("data", (chunk) => {
      buf += chunk;
      let nl;
      while ((nl = buf.indexOf("\n")) >= 0) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        if (!line.trim()) continue;
        const message = JSON.parse(line);
        onRequest(message, (obj) => socket.write(JSON.stringify(obj) + "\n"), socket);
      }
    });
  });
  await new Promise((resolve) => server.listen(socketPath, resolve));
  t.after(async () => {
    for (const s of sockets) s.destroy();
    await new Promise((resolve) => server.close(resolve));
    fs.rmSync(dir, { recursive: true, force: true });
  });
  return { socket: socketPath, sockets };
}

const HELLO = { server: "fake", version: "0", limits: { max_in_flight: 4, max_line_bytes: 1 << 20 } };

test('a reply with "id": null fails the calls in flight and closes the connection', { timeout: 30000 }, async (t) => {
  const { connect: open } = await harness(t);
  const client = await open();
  const unattributed = [];
  client.on("unattributed", (error) => unattributed.push(error));
  const max = client._conn.maxInFlight;

  // A lone surrogate: the server cannot parse the line, answers -32700 with "id": null.
  await assert.rejects(settles(client.call("contacts.upsert", { contacts: [{ email: "x\ud800y@example.com" }] })), (error) => {
    assert.ok(error instanceof SegmentdConnectionError, `a SegmentdConnectionError, got ${error}`);
    assert.equal(error.code, "UNATTRIBUTED");
    assert.equal(error.cause.code, -32700);
    return true;
  });
  assert.equal(unattributed.length, 1);
  assert.equal(unattributed[0].code, -32700);

  // Params nested 70 deep: also -32700 with "id": null. Run more of them than max_in_flight: none
  // may hang or leak its slot, and the client reconnects for the next call.
  let deep = {};
  for (let i = 0; i < 70; i++) deep = { a: deep };
  const results = await settles(Promise.allSettled(Array.from({ length: max + 2 }, () => client.call("contacts.count", { deep }))), 10000);
  for (const r of results) assert.equal(r.status, "rejected");
  for (let i = 0; i < max + 2; i++) assert.deepEqual(await settles(client.call("contacts.count")), { by_status: {}, total: 0 });
  assert.equal(client._conn.active, 0, "no in-flight slot left taken");
});

test("a request that cannot be serialised rejects without leaking an in-flight slot", { timeout: 30000 }, async (t) => {
  const { connect: open } = await harness(t);
  const client = await open();
  const max = client._conn.maxInFlight;
  const circular = {};
  circular.self = circular;
  for (let i = 0; i < max + 1; i++) {
    await assert.rejects(settles(client.call("contacts.count", { n: 1n })), TypeError);
    await assert.rejects(settles(client.call("contacts.count", { circular })), TypeError);
  }
  assert.equal(client._conn.active, 0);
  // Every slot is still there: max_in_flight calls at once all complete.
  const all = await settles(Promise.all(Array.from({ length: max }, () => client.call("contacts.count"))));
  assert.equal(all.length, max);
});

test("rpc.hello has a deadline: a server that never answers makes connect() reject", { timeout: 30000 }, async (t) => {
  const silent = await fakeServer(t, () => { /* never answers */ });
  const began = Date.now();
  await assert.rejects(settles(connect({ socket: silent.socket, connectTimeoutMs: 300 }), 5000, "connect()"),
    { name: "SegmentdConnectionError", code: "CONNECT_TIMEOUT" });
  assert.ok(Date.now() - began < 4000);

  // A subscription waiting for that connection ends at once on close().
  const client = new Client({ socket: silent.socket, connectTimeoutMs: 60000 });
  const subscription = client.subscribe({ after: 0 });
  const consumed = (async () => { for await (const _ of subscription) { /* none */ } })();
  await new Promise((resolve) => setTimeout(resolve, 100));
  await settles(subscription.close(), 3000, "subscription.close()");
  await settles(consumed, 3000, "the for await");
  await client.close();
});

test("close() of a live-only subscription returns while the server is unreachable", { timeout: 30000 }, async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "sgd-none-"));
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
  const client = new Client({ socket: path.join(dir, "missing.sock") });
  let retries = 0;
  const subscription = client.subscribe({ backoff: { initialMs: 5, maxMs: 20 }, onRetry: () => { retries++; } });
  const consumed = (async () => { for await (const _ of subscription) { /* none */ } })();
  const deadline = Date.now() + 5000;
  while (retries < 3 && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 10));
  await settles(subscription.close(), 3000, "subscription.close()");
  await settles(consumed, 3000, "the for await");
  await client.close();
});

test("with reconnect: false a subscription whose connection closed throws instead of retrying forever", { timeout: 30000 }, async (t) => {
  const fake = await fakeServer(t, (m, write, socket) => {
    if (m.method === "rpc.hello") write({ jsonrpc: "2.0", id: m.id, result: HELLO });
    else if (m.method === "events.subscribe") socket.destroy(); // the connection drops
  });
  const client = await connect({ socket: fake.socket, reconnect: false });
  t.after(() => client.close());
  let retries = 0;
  const subscription = client.subscribe({ after: 0, backoff: { initialMs: 1, maxMs: 5 }, onRetry: () => { retries++; } });
  await assert.rejects(settles((async () => { for await (const _ of subscription) { /* none */ } })(), 5000, "the for await"),
    (error) => {
      assert.ok(error instanceof SegmentdConnectionError);
      assert.equal(error.code, "NO_RECONNECT");
      return true;
    });
  assert.ok(retries <= 1, `retried ${retries} times`);
});

test("a corrupt gzip chunk ends the stream at once with a SegmentdProtocolError", { timeout: 30000 }, async (t) => {
  const good = zlib.gzipSync(Buffer.from('{"email":"a@example.com"}\n'));
  const corrupt = Buffer.from(good);
  corrupt.fill(0xff, 10, 20); // damage the deflate data after the header
  const cancels = [];
  const fake = await fakeServer(t, (m, write) => {
    if (m.method === "rpc.hello") write({ jsonrpc: "2.0", id: m.id, result: HELLO });
    else if (m.method === "segments.resolve") {
      write({ jsonrpc: "2.0", method: "segments.rows", params: { id: m.id, gzip: corrupt.toString("base64") } });
      // no final reply until cancelled
    } else if (m.method === "rpc.cancel") cancels.push(m.params.id);
  });
  const client = await connect({ socket: fake.socket, cancelTimeoutMs: 200 });
  t.after(() => client.close());
  await assert.rejects(settles(client.resolve({ id: 1, compress: "gzip" }).collect(), 3000, "the stream"), SegmentdProtocolError);
  await waitFor("rpc.cancel to reach the server", () => cancels.length === 1, { timeoutMs: 3000 });
});

test("the token is not shown by util.inspect", () => {
  const client = new Client({ port: 1, token: "sup3r-s3cret-t0ken" });
  assert.doesNotMatch(util.inspect(client, { depth: 10, showHidden: true }), /sup3r-s3cret-t0ken/);
  assert.doesNotMatch(JSON.stringify(Object.entries(client)), /sup3r-s3cret-t0ken/);
});

test("stream.cancel() before the request is sent ends the iteration quietly; a bad line is a SegmentdConnectionError PROTOCOL", { timeout: 30000 }, async (t) => {
  const seen = [];
  const fake = await fakeServer(t, (m, write, socket) => {
    seen.push(m.method);
    if (m.method === "rpc.hello") write({ jsonrpc: "2.0", id: m.id, result: { ...HELLO, limits: { max_in_flight: 1 } } });
    else if (m.method === "contacts.count" && m.params?.bad) socket.write("this is not JSON\n");
    // contacts.count otherwise: no reply, it holds the only slot
  });
  const client = await connect({ socket: fake.socket });
  t.after(() => client.close());
  const holder = client.call("contacts.count");
  holder.catch(() => {});
  // Waits for the slot; cancel() before it is sent.
  const stream = client.resolve({ id: 1 });
  const iterating = stream.next();
  await new Promise((resolve) => setTimeout(resolve, 50));
  stream.cancel();
  assert.deepEqual(await settles(iterating), { value: undefined, done: true });
  assert.ok(!seen.includes("segments.resolve"), "never sent");

  // A line that is not JSON fails the connection's calls with SegmentdConnectionError PROTOCOL.
  const other = await connect({ socket: fake.socket });
  t.after(() => other.close());
  await assert.rejects(settles(other.call("contacts.count", { bad: true })), { name: "SegmentdConnectionError", code: "PROTOCOL" });
});
