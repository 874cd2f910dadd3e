// Streams: the same rows with and without gzip, NDJSON and CSV, resolve and export; raw gzip
// bytes; flow control never deadlocks.

import { test } from "node:test";
import assert from "node:assert/strict";
import crypto from "node:crypto";
import fs from "node:fs";
import path from "node:path";
import zlib from "node:zlib";
import { harness } from "../test-support/server.js";

const N = 3000;
const VIP = [{ dimension: "label", op: "contains", value: "vip" }];
const COLUMNS = ["email", "name", "status", "labels", "city"];

// Names that CSV must quote, non-ASCII text (multi-byte UTF-8 split across gzip chunks), and a
// line break inside a field (a CSV record spanning two lines).
function name(i) {
  switch (i % 5) {
    case 0: return `Ana ${i}, "the" first`;
    case 1: return `Ümit ${i} 東京`;
    case 2: return `line one ${i}\nline two`;
    case 3: return ` edge space ${i} `;
    default: return null;
  }
}

test("gzip streams decode to the same rows as plain streams", { timeout: 40000 }, async (t) => {
  const { server, connect } = await harness(t);
  const client = await connect({ socket: server.socket });

  await client.call("fields.define", { name: "city", type: "text" });
  for (let from = 0; from < N; from += 1000) {
    const batch = [];
    for (let i = from; i < Math.min(N, from + 1000); i++) {
      const c = { email: `s-${String(i).padStart(5, "0")}@example.com`, labels: i % 7 === 0 ? ["vip", "gold"] : ["vip"], fields: { city: i % 2 ? "Jakarta" : "Bandung" } };
      if (name(i) !== null) c.name = name(i);
      if (i % 11 === 0) c.status = "unsubscribed";
      batch.push(c);
    }
    const r = await client.call("contacts.upsert", { contacts: batch });
    assert.deepEqual(r.failed, []);
  }
  const segment = await client.call("segments.create", { name: "VIP contacts", filters: VIP });

  await t.test("NDJSON: row objects, identical with and without gzip", async () => {
    const plain = client.resolve({ id: segment.id, audience: "all", columns: COLUMNS, batch_size: 250 });
    const plainRows = await plain.collect();
    const gz = client.resolve({ id: segment.id, audience: "all", columns: COLUMNS, batch_size: 250, compress: "gzip" });
    const gzRows = await gz.collect();
    assert.equal(plainRows.length, N);
    assert.deepEqual(gzRows, plainRows);
    assert.equal(plain.summary.rows, N);
    assert.equal(gz.summary.rows, N);
    assert.equal(plain.summary.complete, true);
    assert.equal(gz.summary.complete, true);
    assert.equal(plain.summary.compress, null);
    assert.equal(gz.summary.compress, "gzip");
    assert.equal(gzRows[2].name, "line one 2\nline two");
    assert.equal(gzRows[1].name, "Ümit 1 東京");
  });

  await t.test("CSV: one string per record, identical with and without gzip; raw gzip bytes are the same text", async () => {
    const params = { id: segment.id, format: "csv", columns: COLUMNS, batch_size: 300 };
    const plain = await client.resolve(params).collect();
    const gz = client.resolve({ ...params, compress: "gzip" });
    const gzRecords = await gz.collect();
    assert.deepEqual(gzRecords, plain);
    assert.equal(plain[0], "email,name,status,labels,city");
    const sendable = N - Math.ceil(N / 11); // unsubscribed contacts are not in the send audience
    assert.equal(plain.length, sendable + 1);
    assert.equal(gz.summary.rows, sendable);
    // A quoted field with a line break stays one record.
    assert.ok(plain.includes('s-00002@example.com,"line one 2\nline two",active,vip,Bandung'), "a record with an embedded line break");
    assert.ok(plain.includes('s-00005@example.com,"Ana 5, ""the"" first",active,vip,Jakarta'));

    // raw: the gzip bytes as sent, e.g. to write audience.csv.gz without decompressing.
    const raw = client.resolve({ ...params, compress: "gzip" }, { raw: true });
    const chunks = await raw.collect();
    assert.ok(chunks.length > 1 && chunks.every((c) => Buffer.isBuffer(c)));
    const text = zlib.gunzipSync(Buffer.concat(chunks)).toString("utf8");
    assert.equal(text, plain.map((r) => r + "\r\n").join(""));
  });

  await t.test("segments.export streams like resolve, and writes files with path", async () => {
    const params = { filters: VIP, format: "csv", columns: COLUMNS, batch_size: 500 };
    const viaResolve = await client.resolve(params).collect();
    const viaExport = await client.export({ ...params, compress: "gzip" }).collect();
    assert.deepEqual(viaExport, viaResolve);

    const file = await client.export({ ...params, compress: "gzip", path: "vip.csv.gz" }).result();
    assert.equal(file.path, "vip.csv.gz");
    assert.equal(file.rows, viaResolve.length - 1);
    const bytes = fs.readFileSync(path.join(server.exportDir, "default", "vip.csv.gz"));
    assert.equal(crypto.createHash("sha256").update(bytes).digest("hex"), file.sha256);
    assert.equal(zlib.gunzipSync(bytes).toString("utf8"), viaResolve.map((r) => r + "\r\n").join(""));
  });

  await t.test("flow control: two streams read one after the other, and calls inside a loop, never deadlock", async () => {
    // A tiny highWaterMark makes this client stop reading its socket as soon as a stream buffers
    // 20 rows nobody takes; it must still deliver what a waiting consumer needs.
    const tight = await connect({ socket: server.socket, highWaterMark: 20 });
    try {
      const a = tight.resolve({ id: segment.id, audience: "all", batch_size: 50 });
      const b = tight.resolve({ id: segment.id, audience: "all", batch_size: 50, compress: "gzip" });
      const first = await a.next(); // starts a
      const second = await b.next(); // starts b: both stream at once on one connection
      assert.equal(first.done, false);
      assert.equal(second.done, false);
      let n = 1;
      for await (const row of a) {
        n++;
        if (n % 1000 === 0) assert.equal((await tight.call("segments.count", { id: segment.id })).matched, N); // a call while paused
        assert.ok(row.email);
      }
      let m = 1;
      for await (const _ of b) m++;
      assert.equal(n, N);
      assert.equal(m, N);
      assert.ok(tight._conn.pauses > 0, "the client did pause reading (flow control was exercised)");
      assert.deepEqual(await tight.ping(), { pong: true });
    } finally {
      await tight.close();
    }
  });
});
