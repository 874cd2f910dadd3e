// Test helpers: start a real segmentd in a temp dir, wait until it answers rpc.ping, stop it.
//
// SEGMENTD_BIN names the server binary; without it, ../../.build/debug/segmentd relative to
// this package. Every wait has a deadline; every server is killed when the process exits.

import { spawn } from "node:child_process";
import fs from "node:fs";
import net from "node:net";
import path from "node:path";
import { fileURLToPath } from "node:url";

const here = path.dirname(fileURLToPath(import.meta.url));
export const SEGMENTD_BIN = process.env.SEGMENTD_BIN
  ? path.resolve(process.env.SEGMENTD_BIN)
  : path.resolve(here, "..", "..", "..", ".build", "debug", "segmentd");

const live = new Set();
process.on("exit", () => {
  for (const child of live) {
    try { child.kill("SIGKILL"); } catch { /* gone */ }
  }
});

/** Resolves after `ms`. */
export const delay = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * Polls `check` (async, truthy = done) every `everyMs` until it is truthy; throws after `timeoutMs`.
 * @template T
 * @param {() => Promise<T>|T} check
 * @returns {Promise<T>}
 */
export async function waitFor(what, check, { timeoutMs = 10000, everyMs = 20 } = {}) {
  const deadline = Date.now() + timeoutMs;
  let last;
  for (;;) {
    try {
      const value = await check();
      if (value) return value;
    } catch (error) {
      last = error;
    }
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${last ? ": " + last.message : ""}`);
    await delay(everyMs);
  }
}

/** rpc.ping over a fresh raw connection (independent of the library under test). */
function rawPing(endpoint, token, timeoutMs = 1000) {
  return new Promise((resolve) => {
    const sock = endpoint.socket ? net.connect({ path: endpoint.socket }) : net.connect({ host: "127.0.0.1", port: endpoint.port });
    let buf = "";
    const done = (ok) => {
      clearTimeout(timer);
      sock.destroy();
      resolve(ok);
    };
    const timer = setTimeout(() => done(false), timeoutMs);
    sock.setEncoding("utf8");
    sock.on("error", () => done(false));
    sock.on("connect", () => {
      if (token) sock.write(JSON.stringify({ jsonrpc: "2.0", id: 0, method: "rpc.hello", params: { token } }) + "\n");
      sock.write('{"jsonrpc":"2.0","id":1,"method":"rpc.ping"}\n');
    });
    sock.on("data", (d) => {
      buf += d;
      for (const line of buf.split("\n")) {
        if (!line) continue;
        try {
          const m = JSON.parse(line);
          if (m.id === 1) return done(m.result?.pong === true);
        } catch { /* partial */ }
      }
    });
  });
}

/** A segmentd process in its own temp dir; `restart()` reuses the data dir and socket. */
export class TestServer {
  constructor({ tcp = false, token, args = [] } = {}) {
    // Short on purpose: sockaddr_un paths are limited to 107 bytes.
    this.dir = fs.mkdtempSync("/tmp/sdn-");
    this.socket = path.join(this.dir, "s.sock");
    this.dataDir = path.join(this.dir, "data");
    this.exportDir = path.join(this.dir, "exports");
    this.logFile = path.join(this.dir, "server.log");
    this.tcp = tcp;
    this.token = token;
    this.args = args;
    this.port = null;
    this.child = null;
    this.starts = 0;
  }

  get endpoint() {
    return { socket: this.socket };
  }

  /** Starts the server and waits (at most 20 s) until it answers rpc.ping. */
  async start() {
    if (!fs.existsSync(SEGMENTD_BIN)) {
      throw new Error(`segmentd binary not found at ${SEGMENTD_BIN}: set SEGMENTD_BIN=/path/to/segmentd`);
    }
    const args = [
      "serve",
      "--data-dir", this.dataDir,
      "--socket", this.socket,
      "--export-dir", this.exportDir,
      "--reevaluate-every", "86400",
      ...(this.tcp ? ["--tcp", "127.0.0.1:0", "--token", this.token] : []),
      ...this.args,
    ];
    const logOffset = fs.existsSync(this.logFile) ? fs.statSync(this.logFile).size : 0;
    const log = fs.openSync(this.logFile, "a");
    const child = spawn(SEGMENTD_BIN, args, { cwd: this.dir, stdio: ["ignore", log, log] });
    fs.closeSync(log);
    this.child = child;
    this.starts++;
    live.add(child);
    let exited = null;
    child.exitPromise = new Promise((resolve) => {
      child.once("exit", (code, signal) => {
        live.delete(child);
        exited = { code, signal };
        resolve(exited);
      });
    });
    try {
      if (this.tcp) {
        this.port = await waitFor("the TCP port in the server log", () => {
          if (exited) throw new Error(`segmentd exited ${JSON.stringify(exited)}`);
          const text = fs.readFileSync(this.logFile, "utf8").slice(logOffset);
          const m = /:(\d+) rpc\.transport=tcp/.exec(text);
          return m ? Number(m[1]) : null;
        }, { timeoutMs: 20000 });
      }
      await waitFor("segmentd to answer rpc.ping", async () => {
        if (exited) throw new Error(`segmentd exited ${JSON.stringify(exited)}`);
        return rawPing(this.endpoint);
      }, { timeoutMs: 20000 });
    } catch (error) {
      error.message += `\n--- server log ---\n${this.logTail()}`;
      await this.kill9();
      throw error;
    }
    return this;
  }

  logTail(lines = 30) {
    try {
      return fs.readFileSync(this.logFile, "utf8").trim().split("\n").slice(-lines).join("\n");
    } catch {
      return "(no log)";
    }
  }

  async _waitExit(timeoutMs) {
    const child = this.child;
    if (!child || child.exitCode !== null || child.signalCode !== null) return true;
    let timer;
    const exited = await Promise.race([
      child.exitPromise.then(() => true),
      new Promise((resolve) => { timer = setTimeout(() => resolve(false), timeoutMs); }),
    ]);
    clearTimeout(timer);
    return exited;
  }

  /** SIGKILL: no shutdown at all, the socket file stays behind. */
  async kill9() {
    if (!this.child) return;
    this.child.kill("SIGKILL");
    await this._waitExit(10000);
  }

  /**
   * SIGSTOP: the server stops answering, connections stay open. Resolves once the process is
   * stopped (state T in /proc; signals are delivered asynchronously).
   */
  async pause() {
    this.child.kill("SIGSTOP");
    const stat = `/proc/${this.child.pid}/stat`;
    if (!fs.existsSync(stat)) return delay(200);
    await waitFor("the server to stop (SIGSTOP)", () => {
      const text = fs.readFileSync(stat, "utf8");
      return /^\S+ \(.*\) [Tt] /.test(text);
    }, { timeoutMs: 5000, everyMs: 5 });
  }

  /** SIGCONT. */
  resume() { this.child?.kill("SIGCONT"); }

  /**
   * SIGTERM, and waits at most `withinMs` for the process to exit; SIGKILL after that.
   * @returns {Promise<{graceful: boolean, ms: number}>} whether it exited by itself, and when
   */
  async terminate(withinMs) {
    const began = Date.now();
    if (!this.child || this.child.exitCode !== null || this.child.signalCode !== null) return { graceful: true, ms: 0 };
    this.child.kill("SIGCONT");
    this.child.kill("SIGTERM");
    const graceful = await this._waitExit(withinMs);
    const ms = Date.now() - began;
    if (!graceful) await this.kill9();
    return { graceful, ms };
  }

  /** SIGTERM, then SIGKILL if it has not exited within 5 s. */
  async stop() {
    if (!this.child || this.child.exitCode !== null || this.child.signalCode !== null) return;
    this.child.kill("SIGCONT");
    this.child.kill("SIGTERM");
    if (!(await this._waitExit(5000))) await this.kill9();
  }

  /** Stops the server and removes its temp dir (kept with SEGMENTD_KEEP=1). */
  async cleanup() {
    await this.stop();
    if (!process.env.SEGMENTD_KEEP) fs.rmSync(this.dir, { recursive: true, force: true });
  }
}

/** Starts a server; see {@link TestServer}. */
export async function startServer(options) {
  const server = new TestServer(options);
  await server.start();
  return server;
}

/** `n` contacts `prefix-i@example.com`, labels from `labels(i)`. */
export function contacts(prefix, n, from = 0, labels = () => ["vip"]) {
  return Array.from({ length: n }, (_, k) => ({ email: `${prefix}-${from + k}@example.com`, labels: labels(from + k) }));
}

/**
 * Starts a server for test `t` and registers one cleanup that closes every client opened with
 * `connect` first (so the server has nothing to drain), then stops the server.
 * @returns {Promise<{server: TestServer, connect: (options?: object) => Promise<import("../index.js").Client>}>}
 */
export async function harness(t, serverOptions) {
  const { connect } = await import("../index.js");
  const server = new TestServer(serverOptions);
  const clients = [];
  t.after(async () => {
    await Promise.allSettled(clients.map((c) => c.close()));
    await server.cleanup();
  });
  await server.start();
  return {
    server,
    async connect(options = {}) {
      const explicit = options.socket !== undefined || options.port !== undefined;
      const client = await connect(explicit ? options : { socket: server.socket, ...options });
      clients.push(client);
      return client;
    },
  };
}

/** Whether the server log (since the last start) contains `text`. */
export function logContains(server, text) {
  try {
    return fs.readFileSync(server.logFile, "utf8").includes(text);
  } catch {
    return false;
  }
}
