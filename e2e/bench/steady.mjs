// Browser steadiness: a real Chromium observer on the Live page while the server captures
// 1,000 events/s for STEADY_SECONDS (60): its long tasks (over 50 ms); then its memory — the JS
// heap and the wasm memory — after 10,000 events and after 100,000 (garbage collected first).
// The load comes from a separate process (wirescope-bench load: each request is 2 events).
// usage: node bench/steady.mjs
import { spawn } from 'node:child_process';
import { resolve } from 'node:path';
import { startServer } from '../lib/server.mjs';
import { launch, VIEWPORTS } from '../lib/browser.mjs';

const benchBin = process.env.WIRESCOPE_BENCH_BIN ?? resolve('../target/release/wirescope-bench');
const seconds = Number(process.env.STEADY_SECONDS ?? 60);
const RATE = 1000; // events per second

function load(server, eventsPerSecond, secs) {
  return new Promise((done, fail) => {
    const p = spawn(benchBin, ['load', server.url, '--rate', String(eventsPerSecond / 2), '--seconds', String(secs)]);
    let out = '';
    let err = '';
    p.stdout.on('data', (d) => { out += d; });
    p.stderr.on('data', (d) => { err += d; });
    // 'close': the process ended and its output has been read to the end.
    p.on('close', (code) => (code === 0 ? done(Number(/sent=(\d+)/.exec(out)?.[1] ?? 0) * 2) : fail(new Error(`load failed (${code}): ${err}`))));
  });
}

const server = await startServer({ name: 'bench-steady' });
const browser = await launch();
const context = await browser.newContext({ viewport: VIEWPORTS.laptop });
await context.addInitScript(() => {
  window.__long = [];
  new PerformanceObserver((list) => { for (const e of list.getEntries()) window.__long.push(e.duration); })
    .observe({ type: 'longtask', buffered: true });
  addEventListener('TrunkApplicationStarted', (e) => { window.__wasm = e.detail.wasm; });
});
const page = await context.newPage();
const cdp = await context.newCDPSession(page);
await page.goto(`${server.url}/`);
await page.waitForSelector('.link-live');
await page.waitForFunction(() => window.__wasm?.memory);

async function memory() {
  await cdp.send('HeapProfiler.collectGarbage');
  const { usedSize } = await cdp.send('Runtime.getHeapUsage');
  const wasm = await page.evaluate(() => window.__wasm.memory.buffer.byteLength);
  return { js: usedSize, wasm };
}
const mb = (n) => `${(n / 1048576).toFixed(1)} MB`;

// Settle, then forget the long tasks of starting up.
await page.evaluate(() => { window.__long = []; });
let sent = await load(server, RATE, 10);
const at10k = await memory();
await page.evaluate(() => { window.__long = []; });
sent += await load(server, RATE, seconds);
const long = await page.evaluate(() => window.__long);
const over = long.filter((d) => d > 50);
console.log(`browser long tasks at ${RATE} events/s for ${seconds} s: ${over.length} over 50 ms (longest ${Math.max(0, ...long).toFixed(0)} ms) (goal: none) ${over.length === 0 ? 'met' : 'NOT met'}`);
// On to 100,000 events at 3,000 events/s.
const rest = Math.max(0, 100_000 - sent);
if (rest > 0) sent += await load(server, 3000, Math.ceil(rest / 3000));
const at100k = await memory();
const jsRatio = at100k.js / at10k.js;
const wasmRatio = at100k.wasm / at10k.wasm;
console.log(`browser memory at ${sent} events: JS heap ${mb(at100k.js)} (${jsRatio.toFixed(2)}× the ${mb(at10k.js)} at 10,000), wasm memory ${mb(at100k.wasm)} (${wasmRatio.toFixed(2)}× ${mb(at10k.wasm)}) (goal: ≤ 1.5×) ${jsRatio <= 1.5 && wasmRatio <= 1.5 ? 'met' : 'NOT met'}`);
await context.close();
await browser.close();
await server.stop();
