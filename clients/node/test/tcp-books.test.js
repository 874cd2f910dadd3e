// TCP with a token, and books: the client's default book, per-call overrides, isolation.

import { test } from "node:test";
import assert from "node:assert/strict";
import { SegmentdError } from "../index.js";
import { harness, contacts, waitFor } from "../test-support/server.js";

const TOKEN = "s3cret-token";
const VIP = [{ dimension: "label", op: "contains", value: "vip" }];

test("TCP with a token, and books", { timeout: 40000 }, async (t) => {
  const { server, connect } = await harness(t, { tcp: true, token: TOKEN });

  await t.test("the right token connects; a wrong or missing one is a typed -32005", async () => {
    const client = await connect({ host: "127.0.0.1", port: server.port, token: TOKEN });
    try {
      assert.equal(client.hello.transport, "tcp");
      assert.equal(client.hello.server, "segmentd");
      assert.deepEqual(await client.ping(), { pong: true });
    } finally {
      await client.close();
    }
    for (const token of ["wrong", undefined]) {
      await assert.rejects(connect({ host: "127.0.0.1", port: server.port, token }), (error) => {
        assert.ok(error instanceof SegmentdError, `${error}`);
        assert.equal(error.code, -32005);
        assert.equal(error.type, "unauthorized");
        assert.equal(error.method, "rpc.hello");
        return true;
      });
    }
  });

  await t.test("book: client default, per-call override; data in one book is not in the other", async () => {
    const admin = await connect({ port: server.port, token: TOKEN });
    const acme = await connect({ port: server.port, token: TOKEN, book: "acme" });
    try {
      // books.* are not book-scoped: the client's default book is not added to them.
      const created = await acme.call("books.create", { name: "acme" });
      assert.equal(created.name, "acme");
      assert.deepEqual((await acme.call("books.list")).books.map((b) => b.name), ["acme", "default"]);

      await acme.call("contacts.upsert", { contacts: contacts("acme", 3) });
      await admin.call("contacts.upsert", { contacts: contacts("dflt", 1) });
      assert.equal((await acme.call("contacts.count")).total, 3);
      assert.equal((await admin.call("contacts.count")).total, 1);
      assert.equal((await acme.call("contacts.count", {}, { book: "default" })).total, 1, "per-call override");
      assert.equal((await admin.call("contacts.count", {}, { book: "acme" })).total, 3, "per-call override");
      assert.equal((await acme.call("contacts.count", { book: "default" })).total, 1, "params.book wins");
      await assert.rejects(acme.call("contacts.get", { email: "dflt-0@example.com" }), { code: -32001, type: "not_found" });
      await assert.rejects(admin.call("contacts.count", {}, { book: "acmee" }), { code: -32001, type: "not_found" });
      await assert.rejects(admin.call("contacts.count", {}, { book: "ACME" }), { code: -32602, path: "book" });

      // Streams and triggers are per book too.
      const segment = await acme.call("segments.create", { name: "Acme VIPs", filters: VIP });
      const rows = await acme.resolve({ id: segment.id }).collect();
      assert.deepEqual(rows.map((r) => r.email).sort(), ["acme-0@example.com", "acme-1@example.com", "acme-2@example.com"]);
      const fromDefault = await admin.resolve({ filters: VIP, compress: "gzip" }).collect();
      assert.deepEqual(fromDefault.map((r) => r.email), ["dflt-0@example.com"]);

      await acme.call("triggers.create", { segment: segment.id });
      const ac = new AbortController();
      const got = [];
      const sub = acme.subscribe({ after: 0, signal: ac.signal });
      const consuming = (async () => {
        try {
          for await (const e of sub) got.push(e);
        } catch (error) {
          if (error.name !== "AbortError") throw error;
        }
      })();
      await acme.call("contacts.upsert", { contacts: contacts("acme", 2, 10) });
      await admin.call("contacts.upsert", { contacts: contacts("dflt", 2, 10) }); // no trigger in default
      await waitFor("2 acme events", () => got.length >= 2, { timeoutMs: 10000 });
      ac.abort();
      await consuming;
      assert.deepEqual(got.map((e) => [e.cursor, e.email, e.type]), [[1, "acme-10@example.com", "enter"], [2, "acme-11@example.com", "enter"]]);
      assert.deepEqual((await admin.call("events.read", { after: 0 })).events, [], "the default book's log is empty");
      assert.equal(await admin.newestCursor({ book: "acme" }), 2);
      assert.equal(await admin.newestCursor(), 0);
    } finally {
      await admin.close();
      await acme.close();
    }
  });
});
