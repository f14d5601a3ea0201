// The first slice: a REST request and a WebSocket echo, each step drawn as it happens.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { startServer, ARTIFACTS } from '../lib/server.mjs';
import { launch, openPage, arrowLabels, waitForLabels, VIEWPORTS } from '../lib/browser.mjs';

let server, browser;
before(async () => {
  server = await startServer({ name: 'foundation-server' });
  browser = await launch();
});
after(async () => {
  await browser?.close();
  if (server) {
    const how = await server.stop();
    assert.equal(how.code, 0, `server stopped cleanly on stdin EOF: ${JSON.stringify(how)}`);
  }
});

test('lanes are drawn before any click', async () => {
  const { page, context, problems } = await openPage(browser, server.url);
  await page.waitForSelector('svg.diagram-head g.lane-server');
  const titles = await page.$$eval('svg.diagram-head .lane-title', (els) => els.map((e) => e.textContent));
  assert.deepEqual(titles, ['This browser', 'Server']);
  assert.equal((await arrowLabels(page)).length, 0);
  assert.deepEqual(problems, []);
  await context.close();
});

test('a REST request and a WebSocket echo are drawn step by step, with timestamps', async () => {
  const { page, context, problems } = await openPage(browser, server.url, VIEWPORTS.laptop);
  await page.click('#send-health');
  await waitForLabels(page, ['GET /api/health', '200 OK']);
  await page.waitForFunction(() => document.querySelector('#rest-result').textContent.includes('server ok'));

  await page.fill('#frame-text', 'hello from the e2e test');
  await page.click('#run-echo');
  await page.waitForFunction(() => document.querySelector('#ws-result').textContent.includes('closed cleanly'));
  await waitForLabels(page, [
    'GET /api/health',
    '200 OK',
    'GET /ws/echo · Upgrade: websocket',
    '101 Switching Protocols',
    'text "hello from the e2e test"',
    'text "hello from the e2e test"',
    'Close 1000 Normal Closure "done"',
    'Close 1000 Normal Closure "done"',
  ]);
  // The server saw the same steps as this browser: each arrow is its record, joined to the
  // browser's, so both ends' times are known.
  const stamped = await page.$$eval('svg.diagram g.arrow.mine', (gs) => gs.filter((g) => g.dataset.seq).length);
  assert.equal(stamped, 8);

  // Direction: requests and client frames point at the server lane, answers come back.
  const dirs = await page.$$eval('svg.diagram g.arrow .arrow-line', (ls) =>
    ls.map((l) => (Number(l.getAttribute('x2')) > Number(l.getAttribute('x1')) ? '→' : '←')));
  assert.deepEqual(dirs, ['→', '←', '→', '←', '→', '←', '→', '←']);

  // Every row carries its time, the first at +0, later ones non-decreasing.
  const times = await page.$$eval('svg.diagram g.arrow .row-time', (ts) => ts.map((t) => t.textContent));
  assert.equal(times.length, 8);
  assert.equal(times[0], '+0 ms');
  for (const t of times) assert.match(t, /^\+\d+(\.\d+)? (ms|s)$/);
  const notes = await page.$$eval('svg.diagram g.arrow .arrow-note', (ns) => ns.map((n) => n.textContent));
  assert.ok(notes.some((n) => n.startsWith('round trip')), `round trips shown: ${notes}`);

  await page.waitForTimeout(500); // let the last arrow finish travelling
  await page.screenshot({ path: join(ARTIFACTS, 'foundation-laptop.png'), fullPage: true });
  for (const [name, viewport] of [['phone', VIEWPORTS.phone], ['projector', VIEWPORTS.projector]]) {
    await page.setViewportSize(viewport);
    await page.waitForTimeout(300);
    // Nothing drawn outside the visible frame: the diagram fits the screen's width.
    const overflow = await page.evaluate(() => {
      const svg = document.querySelector('svg.diagram');
      return svg.getBoundingClientRect().right - document.documentElement.clientWidth;
    });
    assert.ok(overflow <= 0, `${name}: diagram overflows by ${overflow}px`);
    // The navigation is whole, and the page never scrolls sideways.
    const clipped = await page.evaluate(() => {
      const w = document.documentElement.clientWidth;
      const links = [...document.querySelectorAll('.nav a')].filter((a) => a.getBoundingClientRect().right > w);
      return { links: links.map((a) => a.textContent), wide: document.documentElement.scrollWidth - w };
    });
    assert.deepEqual(clipped, { links: [], wide: 0 }, `${name}: nothing cut off at the right edge`);
    await page.screenshot({ path: join(ARTIFACTS, `foundation-${name}.png`), fullPage: true });
  }
  assert.deepEqual(problems, []);
  await context.close();
});

test('unknown pages show the app, unknown API paths a JSON 404', async () => {
  const { page, context } = await openPage(browser, `${server.url}/no/such/page`);
  await page.waitForSelector('text=Nothing here');
  const res = await page.request.get(`${server.url}/api/nope`);
  assert.equal(res.status(), 404);
  assert.equal((await res.json()).message, 'Not Found');
  await context.close();
});
