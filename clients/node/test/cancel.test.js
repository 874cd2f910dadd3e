// Cancellation: AbortSignal and `break` stop streams and subscriptions on the server (rpc.cancel),
// and the connection stays usable.

import { test } from "node:test";
import assert from "node:assert/strict";
import crypto from "node:crypto";
import { harness, contacts, waitFor } from "../test-support/server.js";

const N = 5000;
const VIP = [{ dimension: "label", op: "contains", value: "vip" }];

/** Requests in flight on the server, not counting the server.stats call itself. */
async function othersInFlight(client) {
  return (await client.call("server.stats")).rpc.requests_in_flight - 1;
}

test("cancellation with AbortSignal and break", { timeout: 40000 }, async (t) => {
  const { server, connect } = await harness(t);
  const client = await connect({ socket: server.socket });
  // Names that do not compress: a whole stream (~1.3 MB as gzip+base64) cannot fit in the socket
  // buffers, so a stream whose reader stopped reading is still running on the server.
  for (let from = 0; from < N; from += 1000) {
    const batch = contacts("c", 1000, from).map((c) => ({ ...c, name: crypto.randomBytes(100).toString("hex") }));
    await client.call("contacts.upsert", { contacts: batch });
  }
  // A client that stops reading its socket once 50 rows wait for the consumer.
  const tight = await connect({ socket: server.socket, highWaterMark: 50 });
  const segment = await client.call("segments.create", { name: "VIP contacts", filters: VIP });
  await client.call("triggers.create", { segment: segment.id });

  await t.test("aborting a stream ends the loop with AbortError and cancels it on the server", async () => {
    const ac = new AbortController();
    // Small batches, and a consumer slower than the server: it is still running when aborted.
    const stream = tight.resolve({ id: segment.id, batch_size: 10, compress: "gzip" }, { signal: ac.signal });
    let n = 0;
    await assert.rejects((async () => {
      for await (const row of stream) {
        assert.ok(row.email);
        // Abort while more than 50 rows wait here and the client has stopped reading: the
        // server's final reply is behind them and must still be read.
        if (++n === 1) {
          await waitFor("the client to pause reading", () => tight._conn.paused, { timeoutMs: 10000, everyMs: 5 });
          ac.abort();
        }
      }
    })(), { name: "AbortError" });
    assert.equal(n, 1, "no row after the abort");
    assert.equal(stream.summary?.complete, false, `the server's final reply says incomplete: ${JSON.stringify(stream.summary)}`);
    assert.ok(stream.summary.rows < N);
    assert.equal(await othersInFlight(client), 0, "nothing left running on the server");
    assert.deepEqual(await tight.ping(), { pong: true });
    assert.equal((await tight.resolve({ id: segment.id }).collect()).length, N, "the next stream is whole");
  });

  await t.test("break out of for await cancels the stream", async () => {
    const stream = tight.export({ id: segment.id, format: "csv", batch_size: 10 });
    let n = 0;
    for await (const _ of stream) {
      if (++n === 1) await waitFor("the client to pause reading", () => tight._conn.paused, { timeoutMs: 10000, everyMs: 5 });
      if (n === 20) break;
    }
    assert.equal(stream.summary?.complete, false);
    assert.equal(await othersInFlight(client), 0);
    assert.equal((await tight.call("segments.count", { id: segment.id })).matched, N);
  });

  await t.test("an already aborted signal never sends the request", async () => {
    const signal = AbortSignal.abort();
    await assert.rejects(client.resolve({ id: segment.id }, { signal }).collect(), { name: "AbortError" });
    await assert.rejects(client.call("segments.count", { id: segment.id }, { signal }), { name: "AbortError" });
    await assert.rejects((async () => { for await (const _ of client.subscribe({ after: 0, signal })) { /* none */ } })(), { name: "AbortError" });
  });

  await t.test("aborting a subscription ends it with AbortError; break ends it quietly", async () => {
    await client.call("contacts.upsert", { contacts: contacts("sub", 5, 0) });
    const ac = new AbortController();
    const sub = client.subscribe({ after: 0, signal: ac.signal });
    const got = [];
    await assert.rejects((async () => {
      for await (const event of sub) {
        got.push(event.cursor);
        if (got.length === 3) ac.abort();
      }
    })(), { name: "AbortError" });
    assert.deepEqual(got, [1, 2, 3]);
    assert.equal(sub.cursor, 3);
    assert.equal(await othersInFlight(client), 0, "the subscription is cancelled on the server");

    // Live only (no `after`): sees what commits after it started; `break` ends it.
    const live = client.subscribe();
    const it = live[Symbol.asyncIterator]();
    const first = it.next();
    await waitFor("the live subscription to start", () => live.cursor !== null, { timeoutMs: 10000 });
    assert.equal(live.cursor, 5);
    await client.call("contacts.upsert", { contacts: contacts("sub", 1, 100) });
    const e = await first;
    assert.equal(e.value.email, "sub-100@example.com");
    assert.equal(e.value.cursor, 6);
    await it.return();
    assert.equal(await othersInFlight(client), 0);
    assert.deepEqual(await client.ping(), { pong: true });

    // close() from outside while the loop waits for an event: the loop ends quietly.
    const idle = client.subscribe();
    const loop = (async () => {
      const seen = [];
      for await (const event of idle) seen.push(event);
      return seen;
    })();
    await waitFor("the idle subscription to start", () => idle.cursor !== null, { timeoutMs: 10000 });
    await waitFor("the subscription to be in flight", async () => (await othersInFlight(client)) === 1, { timeoutMs: 10000 });
    await idle.close();
    assert.deepEqual(await loop, []);
    assert.equal(await othersInFlight(client), 0);
  });

  await t.test("an abort while the server does not answer rejects at once; the connection recovers", async () => {
    await server.pause();
    try {
      const signal = AbortSignal.timeout(200);
      await assert.rejects(client.call("contacts.count", {}, { signal }), { name: "TimeoutError" });
    } finally {
      server.resume();
    }
    assert.equal((await client.call("contacts.count")).total, N + 6);
  });
});
