// Starts the real `wirescope` binary on 127.0.0.1 with a free port. The server watches its
// standard input and stops when this process ends, even if a test crashes.
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, createWriteStream, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

// The repository's root, wherever the tests are started from.
const ROOT = fileURLToPath(new URL('../..', import.meta.url));
export const ARTIFACTS = resolve(process.env.ARTIFACTS ?? join(ROOT, 'target/artifacts'));
mkdirSync(ARTIFACTS, { recursive: true });

export async function startServer({ name = 'server', args = [], addr = '127.0.0.1:0', dataDir } = {}) {
  const bin = process.env.WIRESCOPE_BIN ?? join(ROOT, 'target/release/wirescope');
  const assets = process.env.WIRESCOPE_ASSETS ?? join(ROOT, 'dist');
  dataDir ??= mkdtempSync(join(tmpdir(), 'wirescope-e2e-'));
  const child = spawn(bin, ['--addr', addr, '--assets', assets, '--data-dir', dataDir, '--exit-on-stdin-eof', ...args], {
    stdio: ['pipe', 'pipe', 'pipe'],
    env: { ...process.env, RUST_LOG: process.env.RUST_LOG ?? 'info' },
  });
  const log = createWriteStream(join(ARTIFACTS, `${name}.log`));
  child.stderr.pipe(log);
  // Standard output holds exactly one line, `listening on …`; the instructor's link is a plain
  // line on standard error (among the logs).
  let out = '';
  let err = '';
  let instructor = '';
  const url = await new Promise((ok, fail) => {
    const timer = setTimeout(() => fail(new Error(`no "listening on" line within 10 s: ${out}`)), 10_000);
    const check = () => {
      const m = out.match(/^listening on (http:\/\/127\.0\.0\.1:\d+)$/m);
      const i = err.match(/^instructor: (\S+)$/m);
      if (m && i) { clearTimeout(timer); instructor = i[1]; ok(m[1]); }
    };
    child.stdout.on('data', (chunk) => { out += chunk; check(); });
    child.stderr.on('data', (chunk) => { if (!instructor) { err += chunk; check(); } });
    child.on('exit', (code) => { clearTimeout(timer); fail(new Error(`server exited (${code}) before listening: ${out}`)); });
  });
  const exited = new Promise((ok) => child.on('exit', (code, signal) => ok({ code, signal })));
  return {
    url,
    /** The instructor's link, `http://…/#token=…`. */
    instructor,
    token: instructor.split('#token=')[1],
    dataDir,
    child,
    /** Closes the server's stdin (it stops by itself) and waits for it to exit. */
    async stop({ keepData = false } = {}) {
      child.stdin.end();
      const timer = setTimeout(() => child.kill('SIGKILL'), 8_000);
      const how = await exited;
      clearTimeout(timer);
      if (!keepData) rmSync(dataDir, { recursive: true, force: true });
      return how;
    },
  };
}

/** A port nobody listens on right now (for a server that must come back on the same port). */
export async function freePort() {
  const net = await import('node:net');
  return new Promise((ok) => {
    const srv = net.createServer();
    srv.listen(0, '127.0.0.1', () => { const { port } = srv.address(); srv.close(() => ok(port)); });
  });
}
