// An error reply is a typed error, never a hang; a dead server rejects every pending call.

import { test } from "node:test";
import assert from "node:assert/strict";
import path from "node:path";
import { Client, SegmentdError, SegmentdConnectionError, ErrorCode } from "../index.js";
import { harness, contacts, waitFor } from "../test-support/server.js";

/** Fails the test instead of hanging: the promise must settle within `ms`. */
function settles(promise, ms = 10000) {
  let timer;
  return Promise.race([
    promise,
    new Promise((_, reject) => { timer = setTimeout(() => reject(new Error(`still pending after ${ms} ms`)), ms); }),
  ]).finally(() => clearTimeout(timer));
}

/** Asserts that `promise` rejects (within a deadline) with an error matching `expected`. */
async function rejectsWith(promise, expected) {
  await assert.rejects(settles(promise), expected);
}

test("error replies are typed errors, not hangs", { timeout: 40000 }, async (t) => {
  const { server, connect } = await harness(t);
  const client = await connect({ socket: server.socket });
  await client.call("contacts.upsert", { contacts: contacts("e", 5) });

  await t.test("a bad filter is -32602 invalid_params with the path of the operator", async () => {
    await rejectsWith(
      client.call("segments.count", { filters: [{ dimension: "label", op: "greater_than", value: "vip" }] }),
      (error) => {
        assert.ok(error instanceof SegmentdError, `a SegmentdError, got ${error}`);
        assert.equal(error.code, -32602);
        assert.equal(error.code, ErrorCode.INVALID_PARAMS);
        assert.equal(error.type, "invalid_params");
        assert.equal(error.path, "filters[0].op");
        assert.equal(error.method, "segments.count");
        assert.match(error.message, /greater_than/);
        assert.equal(error.data.path, "filters[0].op");
        return true;
      });
    await rejectsWith(
      client.call("segments.create", { name: "Bad", filters: [{ dimension: "label", op: "contains", value: "vip" }, { dimension: "planet", op: "equals", value: "mars" }] }),
      { name: "SegmentdError", code: -32602, type: "invalid_params", path: "filters[1].dimension" });
    // Positional params: the path is "" (the params as a whole), not null.
    await rejectsWith(client.call("rpc.ping", [1]), { code: -32602, type: "invalid_params", path: "" });
    // An error without a path has path null.
    await rejectsWith(client.call("segments.get", { id: 404 }), { code: -32001, type: "not_found", path: null });
  });

  await t.test("an error on a streaming method ends the iteration with the error", async () => {
    const unknownColumn = client.resolve({ filters: [{ dimension: "label", op: "contains", value: "vip" }], columns: ["email", "shoe_size"] });
    const rows = [];
    await rejectsWith((async () => { for await (const row of unknownColumn) rows.push(row); })(),
      { name: "SegmentdError", code: -32602, type: "invalid_params", path: "columns[1]", method: "segments.resolve" });
    assert.deepEqual(rows, [], "no row before the error");
    assert.equal(unknownColumn.summary, null);

    // Unknown segment, with gzip: the error comes instead of any chunk.
    await rejectsWith(client.resolve({ id: 999, format: "csv", compress: "gzip" }).collect(),
      { code: -32001, type: "not_found" });
    await rejectsWith(client.export({ id: 999 }).result(), { code: -32001, type: "not_found" });
    // An export path outside the export folder.
    await rejectsWith(client.export({ filters: [{ dimension: "label", op: "contains", value: "vip" }], path: "../../etc/x.csv" }).result(),
      { code: -32602, type: "invalid_params", path: "path" });
    // A subscription with a cursor from the future cannot be resumed: it throws at once, and
    // the error says where the log ends.
    const newest = await client.newestCursor();
    await rejectsWith((async () => { for await (const _ of client.subscribe({ after: 10 ** 9 })) { /* none */ } })(),
      (error) => {
        assert.ok(error instanceof SegmentdError, `${error}`);
        assert.equal(error.code, -32602);
        assert.equal(error.path, "after");
        assert.equal(error.data.newest_cursor, newest);
        return true;
      });
  });

  await t.test("many calls in flight on one connection, more than max_in_flight, each gets its own reply", async () => {
    await client.call("contacts.upsert", { contacts: contacts("many", 300) });
    const n = client.hello.limits.max_in_flight * 10;
    const replies = await settles(Promise.all(Array.from({ length: n }, (_, i) => (i % 3 === 0
      ? client.call("contacts.get", { email: `many-${i % 300}@example.com` }).then((r) => r.email === `many-${i % 300}@example.com`)
      : i % 3 === 1
        ? client.call("contacts.get", { email: `nobody-${i}@example.com` }).then(() => false, (e) => e.code === -32001)
        : client.ping().then((r) => r.pong === true)))));
    assert.equal(replies.length, n);
    assert.ok(replies.every(Boolean), "every reply matched its request");
  });

  await t.test("an unknown method is -32601 method_not_found", async () => {
    await rejectsWith(client.call("segments.frobnicate", {}), (error) => {
      assert.ok(error instanceof SegmentdError);
      assert.equal(error.code, -32601);
      assert.equal(error.type, "method_not_found");
      assert.equal(error.data.method, "segments.frobnicate");
      assert.equal(error.path, null);
      return true;
    });
  });

  await t.test("a request over max_line_bytes is refused here, and the connection goes on", async () => {
    const huge = contacts("big", 1).map((c) => ({ ...c, name: "x".repeat(client.hello.limits.max_line_bytes) }));
    await rejectsWith(client.call("contacts.upsert", { contacts: huge }), { code: -32003, type: "too_large" });
    assert.deepEqual(await client.ping(), { pong: true });
  });

  await t.test("calls pending when the server dies reject with SegmentdConnectionError", async () => {
    const other = await connect({ socket: server.socket });
    const total = (await client.call("contacts.count")).total;
    try {
      // A live subscription, a stream and plain calls, all pending while the server is stopped…
      const subscriptionCall = client.call("events.subscribe", {});
      await server.pause();
      const pending = [
        client.call("contacts.count"),
        client.ping(),
        client.resolve({ filters: [{ dimension: "label", op: "contains", value: "vip" }] }).collect(),
        subscriptionCall,
        other.call("segments.list"),
      ];
      pending.forEach((p) => p.catch(() => {}));
      // …then killed: every one of them rejects; none hangs.
      await server.kill9();
      for (const p of pending) {
        await rejectsWith(p, (error) => {
          assert.ok(error instanceof SegmentdConnectionError, `a SegmentdConnectionError, got ${error?.name}: ${error?.message}`);
          assert.ok(!(error instanceof SegmentdError));
          return true;
        });
      }
      // With the server gone, a new call fails fast (the stale socket refuses connections).
      await rejectsWith(client.ping(), { name: "SegmentdConnectionError", code: "ECONNREFUSED" });
      // Restarted on the same socket: the same client object reconnects on its next call.
      await server.start();
      assert.deepEqual(await settles(client.ping()), { pong: true });
      assert.equal((await settles(client.call("contacts.count"))).total, total, "the data survived kill -9");
    } finally {
      await other.close();
    }
  });

  await t.test("connection failures are SegmentdConnectionError", async () => {
    await rejectsWith(connect({ socket: path.join(server.dir, "missing.sock") }), { name: "SegmentdConnectionError", code: "ENOENT" });
    const closed = new Client({ socket: server.socket });
    await closed.connect();
    await closed.close();
    await rejectsWith(closed.call("rpc.ping"), { name: "SegmentdConnectionError", code: "CLIENT_CLOSED" });
    // A call pending when the client is closed rejects too.
    const c = await connect({ socket: server.socket });
    const pending = c.call("events.subscribe", {});
    await c.close();
    await rejectsWith(pending, { name: "SegmentdConnectionError", code: "CLIENT_CLOSED" });
  });
});

test("a cursor older than retention throws instead of skipping events", { timeout: 30000 }, async (t) => {
  // Keeps 5 events; prunes on the clock tick (every second here: the one test that needs a short
  // --reevaluate-every; the later flag wins over the harness's).
  const { connect } = await harness(t, { args: ["--event-retention-count", "5", "--reevaluate-every", "1"] });
  const client = await connect();
  const segment = await client.call("segments.create", { name: "VIP contacts", filters: [{ dimension: "label", op: "contains", value: "vip" }] });
  await client.call("triggers.create", { segment: segment.id });
  await client.call("contacts.upsert", { contacts: contacts("r", 20) });
  await waitFor("retention to prune the log", async () => {
    try {
      await client.call("events.read", { after: 0 });
      return false;
    } catch (error) {
      if (error instanceof SegmentdError && error.code === -32602) return true;
      throw error;
    }
  }, { timeoutMs: 15000, everyMs: 100 });
  const log = async (after) => (await client.call("events.read", { after, limit: 100 })).events;
  const received = [];
  let refusal;
  await assert.rejects((async () => {
    for await (const event of client.subscribe({ after: 0, backoff: { initialMs: 10, maxMs: 50 } })) received.push(event);
  })(), (error) => {
    assert.ok(error instanceof SegmentdError, `${error}`);
    assert.equal(error.code, -32602);
    assert.equal(error.path, "after");
    assert.ok(Number.isInteger(error.data.resume_after) && error.data.resume_after >= 15, `data.resume_after: ${JSON.stringify(error.data)}`);
    refusal = error;
    return true;
  });
  assert.deepEqual(received, []);
  assert.equal(await client.newestCursor(), 20, "newestCursor() reads past the pruned start (after data.resume_after)");

  // Resuming where the error says skips what was pruned, and delivers what is kept, once each.
  const kept = await log(refusal.data.resume_after);
  assert.ok(kept.length >= 1 && kept.length <= 5, `kept ${kept.length} events`);
  const resumed = client.subscribe({ after: refusal.data.resume_after });
  const it = resumed[Symbol.asyncIterator]();
  for (const event of kept) assert.deepEqual((await it.next()).value, event);
  await it.return();

  // Live only (no `after`): the subscription starts at the newest cursor, on a pruned log too.
  const live = client.subscribe({});
  const liveIt = live[Symbol.asyncIterator]();
  const next = liveIt.next();
  await waitFor("the live subscription to know its start", () => live.cursor !== null, { timeoutMs: 10000 });
  assert.equal(live.cursor, 20);
  await client.call("contacts.upsert", { contacts: contacts("r", 1, 100) });
  const first = (await next).value;
  assert.equal(first.email, "r-100@example.com");
  assert.equal(first.cursor, 21);
  await liveIt.return();
});
