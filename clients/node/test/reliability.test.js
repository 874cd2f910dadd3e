// A subscriber that survives `kill -9` of the server and two restarts on the same data dir and
// socket gets every event of the log exactly once, in cursor order; so does one whose server
// restarts gracefully, and one the server times out (-32004) for not reading.

import { test } from "node:test";
import assert from "node:assert/strict";
import { SegmentdConnectionError, SegmentdError } from "../index.js";
import { harness, waitFor, delay, contacts, logContains } from "../test-support/server.js";

const BATCHES = 30; // writer batches
const PER_BATCH = 20; // new vip contacts per batch: one `enter` each
const KILL_AT = [10, 20]; // SIGKILL once the writer has acknowledged this many batches
const DOWN_MS = 250; // how long the server stays dead (the subscriber backs off meanwhile)

/** Retries a write until it is acknowledged: it may have committed before a kill, which is harmless (upserts set state). */
async function acknowledged(what, fn) {
  const deadline = Date.now() + 20000;
  for (;;) {
    try {
      return await fn();
    } catch (error) {
      const transient = error instanceof SegmentdConnectionError
        || (error instanceof SegmentdError && [-32004, -32006, -32007].includes(error.code));
      if (!transient || Date.now() > deadline) throw error;
      await delay(20);
    }
  }
}

async function readWholeLog(client) {
  const events = [];
  let after = 0;
  for (let page = 0; page < 1000; page++) {
    const r = await client.call("events.read", { after, limit: 1000 });
    if (r.events.length === 0) return events;
    events.push(...r.events);
    after = r.next;
  }
  throw new Error("events.read did not end");
}

test("kill -9 and restart (twice) while subscribed: every event once, in cursor order", { timeout: 45000 }, async (t) => {
  const began = Date.now();
  const { server, connect } = await harness(t);

  const admin = await connect({ socket: server.socket });
  const segment = await admin.call("segments.create", { name: "VIP contacts", filters: [{ dimension: "label", op: "contains", value: "vip" }] });
  await admin.call("triggers.create", { segment: segment.id, on: ["enter", "exit"] });
  const start = await admin.newestCursor();
  assert.equal(start, 0);

  // The subscriber, on its own client (its own connection). A small highWaterMark: the client
  // stops reading the socket while 16 events wait for the consumer, so a backlog stays on the
  // server's side (socket buffers, then the log); what the kill cuts off comes from the log after
  // the restart.
  const subClient = await connect({ socket: server.socket, highWaterMark: 16 });
  const stop = new AbortController();
  const received = [];
  const resumes = [];
  const subscription = subClient.subscribe({
    after: start,
    signal: stop.signal,
    backoff: { initialMs: 20, maxMs: 400, factor: 2, jitter: 0.5 },
    onResume: (info) => resumes.push({ at: Date.now(), after: info.after, error: info.error?.code ?? info.error?.name }),
  });
  const consumer = (async () => {
    try {
      for await (const event of subscription) {
        received.push({ ...event, receivedAt: Date.now() });
        await delay(1); // a consumer a little slower than the writer: a backlog builds up
      }
    } catch (error) {
      if (error?.name !== "AbortError") throw error;
    }
  })();

  // The writer, on another client: new vip contacts (enter), and now and then a contact of the
  // previous batch loses its label (exit). Every write is retried until acknowledged.
  const writer = await connect({ socket: server.socket });
  let acked = 0;
  let kills = 0;
  let expectedEvents = 0;
  const writing = (async () => {
    for (let b = 0; b < BATCHES; b++) {
      // Writes go on through each kill, but not too far ahead of it: some land after each restart.
      const k = KILL_AT.findIndex((at) => b === at + 3);
      if (k >= 0) await waitFor(`kill ${k + 1}`, () => kills > k, { timeoutMs: 20000, everyMs: 5 });
      const batch = contacts("w", PER_BATCH, b * PER_BATCH);
      expectedEvents += PER_BATCH;
      if (b % 3 === 2) {
        batch.push({ email: `w-${(b - 1) * PER_BATCH}@example.com`, remove_labels: ["vip"] });
        expectedEvents += 1;
      }
      batch.push({ email: `plain-${b}@example.com`, labels: ["newsletter"] }); // no event
      await acknowledged(`batch ${b}`, () => writer.call("contacts.upsert", { contacts: batch }));
      acked = b + 1;
      await delay(10);
    }
  })();

  // The killer: SIGKILL mid-way, twice; restart on the same data dir and socket.
  const restarts = [];
  for (const at of KILL_AT) {
    await waitFor(`writer batch ${at}`, () => acked >= at, { timeoutMs: 20000, everyMs: 5 });
    await server.kill9();
    const killedAt = Date.now();
    kills++;
    await delay(DOWN_MS);
    const restartedAt = Date.now(); // the new process is spawned
    await server.start();
    const readyAt = Date.now(); // it answers rpc.ping
    restarts.push({ killedAt, restartedAt, readyAt });
    // Before the next kill, the subscriber resumes on the restarted server and gets an event from
    // it: one past the cursor its first resume after the kill started from (it first consumes
    // what the old connection had already brought).
    await waitFor("an event from the restarted server", () => {
      const resumed = resumes.find((x) => x.at >= killedAt);
      return resumed && received.some((e) => e.cursor > resumed.after);
    }, { timeoutMs: 15000 });
  }
  await writing;
  assert.equal(acked, BATCHES);

  // Everything the log holds must reach the subscriber.
  const log = await readWholeLog(admin);
  const last = log.at(-1).cursor;
  await waitFor("the subscriber to reach the end of the log", () => subscription.cursor >= last, { timeoutMs: 20000 });
  stop.abort();
  await consumer;

  const got = received.map(({ receivedAt, ...event }) => event);
  const cursors = got.map((e) => e.cursor);
  for (let i = 1; i < cursors.length; i++) {
    assert.ok(cursors[i] > cursors[i - 1], `cursors strictly increasing: ${cursors[i - 1]} then ${cursors[i]}`);
  }
  assert.equal(new Set(cursors).size, cursors.length, "no event twice");
  assert.equal(log.length, expectedEvents, "the log holds exactly the writes' transitions");
  assert.deepEqual(got, log, "the subscriber got exactly the log: none missing, none doubled, same order");
  assert.ok(subscription.resumes >= KILL_AT.length, `resumed after each kill (resumes: ${subscription.resumes})`);

  // The first resume after a kill starts after the last event the old connection brought; the
  // first event past that came from the restarted server.
  const resumedAfter = restarts.map((r) => resumes.find((x) => x.at >= r.killedAt).after);
  const firstAfter = restarts.map((r, i) => received.find((e) => e.cursor > resumedAfter[i]).receivedAt - r.restartedAt);
  // Events committed before the kill that the old connection had not brought: read from the log after the restart.
  const backlog = restarts.map((r, i) => log.filter((e) => e.cursor > resumedAfter[i] && Date.parse(e.at) < r.killedAt).length);
  const summary = {
    events: got.length,
    restarts: restarts.length,
    resumes: subscription.resumes,
    restart_to_first_event_ms: firstAfter,
    restart_to_ping_ms: restarts.map((r) => r.readyAt - r.restartedAt),
    undelivered_at_kill: backlog,
    down_ms: DOWN_MS,
    total_ms: Date.now() - began,
  };
  console.log(`RELIABILITY ${JSON.stringify(summary)}`);
  if (process.env.DEBUG_RELIABILITY) console.log(JSON.stringify({ restarts, resumes: resumes.map((r) => ({ ...r, at: r.at - began })), t0: began }));
  t.diagnostic(`reliability: ${JSON.stringify(summary)}`);
});

test("a graceful restart (SIGTERM) ends a live subscription at once, well inside the drain time; it resumes without loss", { timeout: 45000 }, async (t) => {
  // A long drain: a shutdown that waited for the open subscription would take all of it.
  const DRAIN_SECONDS = 60;
  const { server, connect } = await harness(t, { args: ["--drain-seconds", String(DRAIN_SECONDS)] });
  const admin = await connect({ socket: server.socket });
  const segment = await admin.call("segments.create", { name: "VIP contacts", filters: [{ dimension: "label", op: "contains", value: "vip" }] });
  await admin.call("triggers.create", { segment: segment.id });
  // Events from before the subscription: a live-only subscription never delivers them.
  await admin.call("contacts.upsert", { contacts: contacts("before", 30) });
  const start = await admin.newestCursor();
  assert.equal(start, 30);

  const subClient = await connect({ socket: server.socket });
  const stop = new AbortController();
  const received = [];
  const errors = [];
  const subscription = subClient.subscribe({ signal: stop.signal, backoff: { initialMs: 20, maxMs: 200 }, onResume: (r) => errors.push(r.error) });
  const consumer = (async () => {
    try {
      for await (const event of subscription) received.push(event);
    } catch (error) {
      if (error?.name !== "AbortError") throw error;
    }
  })();
  await waitFor("the live subscription to know its start", () => subscription.cursor !== null, { timeoutMs: 10000 });
  assert.equal(subscription.cursor, start, "live only: it starts after the newest cursor");
  await admin.call("contacts.upsert", { contacts: contacts("g", 50) });
  await waitFor("the first 50 events", () => received.length >= 50, { timeoutMs: 10000 });

  const { graceful, ms } = await server.terminate(DRAIN_SECONDS * 1000 / 2); // SIGTERM with the subscription open
  assert.ok(graceful, `the server exited within ${DRAIN_SECONDS / 2} s of SIGTERM, half its drain time (it took ${ms} ms)`);
  const down = await connect({ socket: server.socket }).catch((e) => e);
  assert.ok(down instanceof SegmentdConnectionError, "the server is down");
  await server.start();
  await acknowledged("writes after the restart", () => admin.call("contacts.upsert", { contacts: contacts("g", 50, 50) }));
  await waitFor("all 100 events", () => received.length >= 100, { timeoutMs: 15000 });
  stop.abort();
  await consumer;

  const log = await readWholeLog(admin);
  assert.equal(log.length, 130);
  assert.deepEqual(received, log.filter((e) => e.cursor > start), "every event after the start once, in order; none from before");
  assert.ok(subscription.resumes >= 1);
  // The server ended it with {ended: "cancelled", last_cursor}: the last event it sent.
  const ended = errors.find((e) => e instanceof SegmentdError && e.data?.ended === "cancelled");
  assert.ok(ended, `resumed after the server ended it: ${errors.map((e) => e?.message).join("; ")}`);
  assert.equal(ended.data.last_cursor, start + 50);
  t.diagnostic(`SIGTERM with a subscription open (--drain-seconds ${DRAIN_SECONDS}): exited in ${ms} ms`);
});

test("-32004 subscriber timeout: a consumer that stopped reading resumes from last_cursor, without loss", { timeout: 30000 }, async (t) => {
  const { server, connect } = await harness(t, { args: ["--subscriber-timeout", "1"] });
  const admin = await connect({ socket: server.socket });
  const segment = await admin.call("segments.create", { name: "VIP contacts", filters: [{ dimension: "label", op: "contains", value: "vip" }] });
  await admin.call("triggers.create", { segment: segment.id });
  // More events than the socket buffers hold (~200 bytes each), so the server has to wait for
  // this reader, and gives up after 1 s.
  const TOTAL = 4000;
  for (let from = 0; from < TOTAL; from += 1000) await admin.call("contacts.upsert", { contacts: contacts("slow", 1000, from) });

  const reader = await connect({ socket: server.socket, highWaterMark: 10 });
  const stop = new AbortController();
  const resumes = [];
  const subscription = reader.subscribe({ after: 0, signal: stop.signal, backoff: { initialMs: 20, maxMs: 200 }, onResume: (r) => resumes.push(r) });
  const received = [];
  const consumer = (async () => {
    try {
      for await (const event of subscription) {
        received.push(event);
        // Stops reading (the client stops reading its socket too) until the server has given up
        // on this subscriber after --subscriber-timeout (it logs it), once.
        if (received.length === 5) await waitFor("the server to time this subscriber out", () => logContains(server, "subscriber dropped"), { timeoutMs: 15000 });
      }
    } catch (error) {
      if (error?.name !== "AbortError") throw error;
    }
  })();
  await waitFor(`all ${TOTAL} events`, () => received.length >= TOTAL, { timeoutMs: 20000 });
  stop.abort();
  await consumer;
  const log = await readWholeLog(admin);
  assert.deepEqual(received, log);
  assert.ok(resumes.some((r) => r.error instanceof SegmentdError && r.error.code === -32004 && r.error.type === "overloaded"),
    `resumed after -32004: ${resumes.map((r) => r.error?.message).join("; ")}`);
  const timeout = resumes.find((r) => r.error?.code === -32004).error;
  assert.ok(timeout.data.last_cursor >= 5, "data.last_cursor: everything up to it arrived before the error");
});
