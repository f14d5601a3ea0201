// First load: the bytes a phone pulls to open each page of the app, measured in real Chromium
// from the network events' encoded sizes (compressed as sent, headers included), and what a
// repeat visit pulls. Prints one line per page beside its budget, and the files of the Live
// page. usage: node bench/firstload.mjs
import { startServer } from '../lib/server.mjs';
import { launch, VIEWPORTS } from '../lib/browser.mjs';

const BUDGET = Number(process.env.FIRST_LOAD_BUDGET ?? 250_000);
const PAGES = [['Live', '/'], ['Lab', '/lab'], ['Push', '/push'], ['API', '/docs'], ['Instructor', '/instructor']];

/** Opens `path` in `page` and sums what came over the network until the app is up. */
async function measure(page, url) {
  const cdp = await page.context().newCDPSession(page);
  await cdp.send('Network.enable');
  const files = new Map();
  cdp.on('Network.responseReceived', (e) => {
    const r = e.response;
    files.set(e.requestId, {
      url: r.url, status: r.status, encoding: r.headers['content-encoding'] ?? r.headers['Content-Encoding'] ?? '',
      cached: r.fromDiskCache || r.fromMemoryCache || r.fromPrefetchCache, bytes: 0, type: e.type,
    });
  });
  cdp.on('Network.loadingFinished', (e) => {
    const f = files.get(e.requestId);
    if (f) f.bytes = f.cached ? 0 : e.encodedDataLength;
  });
  await page.goto(url);
  // The app is up: it drew its header (every page has it).
  await page.waitForSelector('header.topbar .nav', { timeout: 30_000 });
  // Every request the page began has finished (or is the event stream's socket).
  await page.waitForLoadState('networkidle');
  await cdp.detach();
  return [...files.values()].filter((f) => f.type !== 'WebSocket');
}

const server = await startServer({ name: 'bench-firstload' });
const browser = await launch();
let live;
const kb = (n) => `${(n / 1000).toFixed(1)} KB`;
for (const [name, path] of PAGES) {
  // A fresh context: an empty cache, like a phone that never opened the app.
  const context = await browser.newContext({ viewport: VIEWPORTS.phone });
  const page = await context.newPage();
  const files = await measure(page, `${server.url}${path}`);
  const total = files.reduce((s, f) => s + f.bytes, 0);
  console.log(`first load ${name} (${path}): ${kb(total)} in ${files.length} requests (goal: ≤ ${kb(BUDGET)}) ${total <= BUDGET ? 'met' : 'NOT met'}`);
  if (name === 'Live') {
    live = files;
    for (const f of files) {
      console.log(`  ${new URL(f.url).pathname} ${f.status} ${f.encoding || 'identity'} ${kb(f.bytes)}`);
    }
    // A repeat visit: the hashed files come from the cache; only index.html goes over the
    // network again, and comes back 304 (headers only).
    const again = await measure(page, `${server.url}${path}`);
    // Every file of the app (the wasm too, however it was fetched); the API's answers aside.
    const api = /^\/(api|transcripts|studentids|ws)(\/|$)/;
    const files2 = again.filter((f) => !api.test(new URL(f.url).pathname));
    const moved = files2.filter((f) => f.bytes > 0);
    const repeat = moved.reduce((s, f) => s + f.bytes, 0);
    const only = moved.map((f) => `${new URL(f.url).pathname} ${f.bytes} B`).join(', ');
    const ok = moved.length === 1 && new URL(moved[0].url).pathname === path && repeat < 1000;
    console.log(`repeat visit Live: ${repeat} B of files over the network (${only}) (goal: index.html's revalidation only) ${ok ? 'met' : 'NOT met'}`);
  }
  await context.close();
}
if (!live) throw new Error('the Live page was not measured');
await browser.close();
await server.stop();
