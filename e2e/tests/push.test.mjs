// Push vs pull, live: two browsers on /ws/events — chat, presence, a REST write pushed to the
// other's diagram (linked to its cause), reconnect after the server was down — and the lab.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { startServer, freePort, ARTIFACTS } from '../lib/server.mjs';
import { launch, openPage, VIEWPORTS } from '../lib/browser.mjs';

let server, browser;
before(async () => {
  server = await startServer({ name: 'push-server' });
  browser = await launch();
});
after(async () => {
  await browser?.close();
  await server?.stop();
});

async function named(page, name) {
  await page.fill('#nickname', name);
  await page.press('#nickname', 'Enter');
}

test('two browsers chat, see presence change, and a REST write is pushed to the other', async () => {
  const ana = await openPage(browser, `${server.url}/push`, VIEWPORTS.laptop);
  await named(ana.page, 'Ana');
  await ana.page.waitForFunction(() => document.querySelector('#channel-status')?.textContent === 'connected');
  await ana.page.waitForFunction(() => document.querySelector('#presence-count').textContent === '1');

  const ben = await openPage(browser, `${server.url}/push`, VIEWPORTS.laptop);
  await named(ben.page, 'Ben');
  await ben.page.waitForFunction(() => document.querySelector('#channel-status')?.textContent === 'connected');
  // Presence: Ana sees Ben arrive.
  await ana.page.waitForFunction(() => document.querySelector('#presence-count').textContent === '2');

  // Chat in a room.
  for (const p of [ana.page, ben.page]) {
    await p.fill('#room-name', 'lecture');
    await p.click('#channel-card ~ section form.inline-form button[type=submit]');
  }
  await ana.page.fill('#chat-text', 'hello from Ana');
  await ana.page.press('#chat-text', 'Enter');
  await ben.page.waitForFunction(() => document.querySelector('#chat-log').textContent.includes('hello from Ana'));
  await ben.page.fill('#chat-text', 'hi Ana, Ben here');
  await ben.page.press('#chat-text', 'Enter');
  await ana.page.waitForFunction(() => document.querySelector('#chat-log').textContent.includes('hi Ana, Ben here'));

  // Ping-pong: the server pings, the browser pongs, for 3 rounds — drawn as data frames.
  await ana.page.fill('#rounds', '3');
  await ana.page.click('#start-pingpong');
  await ana.page.waitForFunction(() => document.querySelector('#pingpong-state').textContent.includes('done: 3 rounds'));

  // A REST write by Ben (from the API, as any client would) reaches Ana as a pushed frame,
  // drawn in Ana's lane and linked to Ben's POST.
  const res = await ben.page.evaluate(async () => {
    const r = await fetch('/transcripts', {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'x-wirescope-client': localStorage.getItem('wirescope.client') },
      body: JSON.stringify({ studentName: 'pushed student' }),
    });
    return r.json();
  });
  await ana.page.waitForFunction((id) => document.querySelector('#pushed-changes').textContent.includes(`student created · student ${id}`), res);
  await ana.page.waitForSelector('svg.diagram g.arrow.mine[data-cause]');
  await ana.page.waitForSelector('svg.diagram g.cause');
  const note = await ana.page.$eval('svg.diagram g.arrow.mine[data-cause] .arrow-note', (t) => t.textContent);
  assert.equal(note, 'pushed because of POST /transcripts');
  await ana.page.waitForTimeout(400);
  await ana.page.screenshot({ path: join(ARTIFACTS, 'push-laptop.png') });

  // Ben leaves: Ana's presence count goes down.
  await ben.context.close();
  await ana.page.waitForFunction(() => document.querySelector('#presence-count').textContent === '1');
  assert.deepEqual(ana.problems, []);
  await ana.context.close();
});

test('the lab page shows non-zero, plausible numbers for all four patterns', async () => {
  // The instructor runs the lab (the link leaves the token in this tab), then opens Lab.
  const { page, context, problems } = await openPage(browser, server.instructor, VIEWPORTS.laptop);
  await page.waitForSelector('nav a[href="/instructor"]');
  await page.click('nav a[href="/lab"]');
  await page.waitForSelector('#lab-start');
  // 5 changes/s, 20 subscribers, 500 ms polling.
  await page.evaluate(() => {
    const set = (id, v) => { const el = document.getElementById(id); el.value = v; el.dispatchEvent(new Event('input', { bubbles: true })); };
    set('subscribers', '20');
  });
  await page.locator('#rate').fill('80');
  await page.locator('#poll').fill('35');
  await page.click('#lab-start');
  await page.waitForFunction(() => document.querySelector('#lab-status').textContent.startsWith('running'));
  // Until every pattern has delivered to this browser and measured staleness (at most 20 s).
  await page.waitForFunction(() => {
    const trs = [...document.querySelectorAll('#lab-table tbody tr')];
    return trs.length === 4 && trs.every((tr) => /^[1-9]\d* changes/.test(tr.querySelector('.mine').textContent)
      && /^\d+ ms \//.test(tr.querySelector('.stale').textContent));
  }, null, { timeout: 20_000 });
  await page.waitForTimeout(1000);
  const rows = await page.$$eval('#lab-table tbody tr', (trs) => trs.map((tr) => ({
    pattern: tr.dataset.pattern,
    requests: Number(tr.querySelector('.requests').textContent),
    bytes: tr.querySelector('.bytes').textContent,
    stale: tr.querySelector('.stale').textContent,
    open: Number(tr.querySelector('.open').textContent),
    mine: tr.querySelector('.mine').textContent,
  })));
  assert.deepEqual(rows.map((r) => r.pattern), ['shortPoll', 'longPoll', 'sse', 'webSocket']);
  for (const r of rows) {
    assert.ok(r.requests > 0, `${r.pattern} requests: ${JSON.stringify(r)}`);
    assert.match(r.bytes, /^\d+(\.\d)? [kM]?B \+ \d+(\.\d)? [kM]?B$/, r.pattern);
    assert.match(r.stale, /^\d+ ms \/ \d+ ms$/, r.pattern);
    assert.match(r.mine, /^[1-9]\d* changes · p50 \d+ ms$/, `this browser received changes by ${r.pattern}: ${r.mine}`);
  }
  const [short, long, sse, ws] = rows;
  assert.ok(short.requests > ws.requests * 2, 'short polling makes many more requests than a WebSocket');
  assert.equal(short.open, 0);
  assert.ok(sse.open === 20 && ws.open === 20 && long.open === 20, 'push and long polling hold a connection per subscriber');
  const p50 = (r) => Number(r.stale.split(' ')[0]);
  assert.ok(p50(short) > p50(ws), `short polling is staler (${short.stale}) than WebSocket (${ws.stale})`);
  await page.screenshot({ path: join(ARTIFACTS, 'lab-laptop.png'), fullPage: true });
  await page.setViewportSize(VIEWPORTS.projector);
  await page.waitForTimeout(1200);
  await page.screenshot({ path: join(ARTIFACTS, 'lab-projector.png'), fullPage: true });
  await page.click('#lab-stop');
  await page.waitForFunction(() => document.querySelector('#lab-status').textContent.startsWith('stopped'));
  assert.deepEqual(problems, []);
  await context.close();
});

test('after the server was down, the browser reconnects on its own, draws each attempt, and rejoins its rooms', async () => {
  const port = await freePort();
  let srv = await startServer({ name: 'push-restart-1', addr: `127.0.0.1:${port}` });
  const { page, context } = await openPage(browser, `${srv.url}/push`, VIEWPORTS.laptop);
  await page.waitForFunction(() => document.querySelector('#channel-status')?.textContent === 'connected');
  await page.fill('#room-name', 'recovery');
  await page.click('#channel-card ~ section form.inline-form button[type=submit]');
  await page.waitForSelector('.rooms .chip');
  // The server issued this browser an id for its limits and mute: a cookie no script can read.
  const issued = async () => (await context.cookies()).find((c) => c.name === 'wirescope_id');
  const before = await issued();
  assert.ok(before?.httpOnly && before.sameSite === 'Strict' && /^k-[0-9a-f]{16}\./.test(before.value), JSON.stringify(before));
  await srv.stop({ keepData: true });
  await page.waitForFunction(() => document.querySelector('#channel-status').textContent.startsWith('lost'));
  // Attempts against the dead server fail, each drawn as a lost message.
  await page.waitForSelector('svg.diagram g.arrow.mine.lost', { timeout: 15_000 });
  srv = await startServer({ name: 'push-restart-2', addr: `127.0.0.1:${port}`, dataDir: srv.dataDir });
  await page.waitForFunction(() => document.querySelector('#channel-status').textContent === 'connected', null, { timeout: 20_000 });
  const connects = await page.textContent('#connects');
  assert.ok(Number(connects) >= 2, `connections made: ${connects}`);
  // Back in its room: a line sent now comes back through the room.
  await page.fill('#chat-text', 'back again');
  await page.press('#chat-text', 'Enter');
  await page.waitForFunction(() => document.querySelector('#chat-log').textContent.includes('back again'));
  // It came back with the same id: the restarted server (same data, same token) accepted it.
  assert.equal((await issued()).value, before.value);
  const upgrades = await page.$$eval('svg.diagram g.arrow.mine .arrow-label', (ls) => ls.filter((l) => l.textContent.startsWith('GET /ws/events')).length);
  assert.ok(upgrades >= 2, `each attempt drawn: ${upgrades} upgrades`);
  await page.screenshot({ path: join(ARTIFACTS, 'push-reconnected.png') });
  await context.close();
  await srv.stop();
});
