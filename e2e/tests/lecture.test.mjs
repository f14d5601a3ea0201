// Lecture mode: a keyboard-only lecture at 1920×1080, faults the client recovers from, held
// messages, and exports (Mermaid parsed by Mermaid, HAR validated, the trace round-tripped,
// the instructor's token in none of them).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { startServer, ARTIFACTS } from '../lib/server.mjs';
import { launch, openPage, waitForLabels, VIEWPORTS } from '../lib/browser.mjs';

let server, browser;
before(async () => {
  server = await startServer({ name: 'lecture-server' });
  browser = await launch();
});
after(async () => {
  await browser?.close();
  await server?.stop();
});

const shot = (page, name) => page.screenshot({ path: join(ARTIFACTS, `lecture-${name}.png`) });
const count = (page) => page.$$eval('svg.diagram g.arrow, svg.diagram g.note-row', (g) => g.length);

test('a keyboard-only lecture at 1920×1080', async () => {
  // The instructor opens the printed link: the token leaves the address bar at once.
  const prof = await openPage(browser, server.instructor, VIEWPORTS.projector);
  await prof.page.waitForSelector('nav a[href="/instructor"]');
  assert.ok(!prof.page.url().includes('token'), `token removed from the address: ${prof.page.url()}`);
  const student = await openPage(browser, server.url, VIEWPORTS.laptop);
  await student.page.waitForSelector('.link-live');
  assert.equal(await student.page.$('nav a[href="/instructor"]'), null, 'students see no instructor controls');

  const p = prof.page;
  await p.evaluate(() => { window.__sameDocument = true; });
  await p.keyboard.press('p');
  await p.waitForSelector('body.present');
  const look = await p.evaluate(() => ({
    body: parseFloat(getComputedStyle(document.body).fontSize),
    label: document.querySelector('.lane-title') && parseFloat(getComputedStyle(document.querySelector('.lane-title')).fontSize),
    topbar: getComputedStyle(document.querySelector('.topbar')).display,
    controls: getComputedStyle(document.querySelector('.controls')).display,
  }));
  assert.ok(look.body >= 28, `body type ${look.body}px`);
  assert.equal(look.topbar, 'none');
  assert.equal(look.controls, 'none');

  // Live: the student's requests appear on the projector.
  await student.page.click('#send-health');
  await p.waitForFunction(() => [...document.querySelectorAll('svg.diagram .arrow-label')].some((t) => t.textContent === 'GET /api/health'));
  const arrowFont = await p.$eval('svg.diagram .arrow-label', (t) => parseFloat(getComputedStyle(t).fontSize));
  assert.ok(arrowFont >= 28, `arrow labels ${arrowFont}px`);
  await p.waitForTimeout(500);
  await shot(p, '1-live-light');

  // Space pauses: new traffic waits. → and PageDown step, ← and PageUp go back.
  const before = await count(p);
  const total = async () => Number((await p.textContent('#playback-count')).split('/ ')[1]);
  const totalBefore = await total();
  await p.keyboard.press(' ');
  await p.waitForFunction(() => document.querySelector('#playback-state').textContent.includes('paused'));
  await student.page.click('#send-health');
  await student.page.waitForFunction(() => document.querySelector('#rest-result').textContent.includes('server ok'));
  // The two new events reached the projector (its total counts them), yet none is drawn.
  await p.waitForFunction((n) => Number(document.querySelector('#playback-count').textContent.split('/ ')[1]) >= n + 2, totalBefore);
  assert.equal(await count(p), before, 'paused: nothing new drawn');
  await p.keyboard.press('ArrowRight');
  await p.waitForFunction((n) => document.querySelectorAll('svg.diagram g.arrow').length === n + 1, before);
  await p.keyboard.press('PageDown');
  await p.waitForFunction((n) => document.querySelectorAll('svg.diagram g.arrow').length === n + 2, before);
  await p.keyboard.press('ArrowLeft');
  await p.keyboard.press('PageUp');
  await p.waitForFunction((n) => document.querySelectorAll('svg.diagram g.arrow').length === n, before);
  // Slow motion: − down to 0.1×, + back up.
  for (let i = 0; i < 5; i++) await p.keyboard.press('-');
  assert.equal(await p.textContent('#playback-speed'), '0.1×');
  const travel = await p.$eval('.diagram-wrap', (w) => w.style.getPropertyValue('--travel'));
  assert.equal(travel, '3500ms', 'arrows take 3.5 s to travel at 0.1×');
  for (let i = 0; i < 3; i++) await p.keyboard.press('+');
  assert.equal(await p.textContent('#playback-speed'), '1×');
  // R replays from the first row, then runs live again.
  await p.keyboard.press('r');
  await p.waitForFunction(() => document.querySelector('#playback-count').textContent.startsWith('0 /') || document.querySelector('#playback-count').textContent.startsWith('1 /'));
  await p.waitForFunction(() => document.querySelector('#playback-state').textContent.includes('live'), null, { timeout: 15_000 });
  const all = await count(p);
  assert.ok(all >= before + 2, `after the replay, everything is there: ${all}`);
  // B blanks the screen, . brings it back; F5 is caught (the page is not reloaded).
  await p.keyboard.press('b');
  await p.waitForSelector('#blank');
  await shot(p, '2-blank');
  await p.keyboard.press('.');
  await p.waitForSelector('#blank', { state: 'detached' });
  await p.keyboard.press('F5');
  await p.keyboard.press('Shift+F5');
  await p.waitForTimeout(500);
  assert.equal(await p.evaluate(() => window.__sameDocument), true, 'F5 did not reload');
  // …because the app takes the key: its default action (reload) is cancelled.
  const prevented = await p.evaluate(() => ['F5', 'PageDown', ' '].map((key) => {
    const e = new KeyboardEvent('keydown', { key, bubbles: true, cancelable: true });
    document.body.dispatchEvent(e);
    return e.defaultPrevented;
  }));
  assert.deepEqual(prevented, [true, true, true], 'F5, PageDown and space are the lecture\'s keys');
  if ((await p.textContent('#playback-state')).includes('paused')) await p.keyboard.press(' ');
  // T: the dark palette. F: the instructor's fault console.
  await p.keyboard.press('t');
  await p.waitForSelector('body.present.dark');
  await p.waitForTimeout(300);
  await shot(p, '3-live-dark');
  await p.keyboard.press('f');
  await p.waitForSelector('#fault-console');
  await shot(p, '4-fault-console');
  // A click does its work and closes the console, so the diagram shows what it did.
  await p.click('#fault-console button:has-text("clear all faults")');
  await p.waitForFunction(() => !document.querySelector('#fault-console'));
  await p.waitForFunction(() => document.querySelector('#console-result')?.textContent === 'done: clear');
  await p.keyboard.press('f');
  await p.waitForSelector('#fault-console');
  await p.keyboard.press('f');
  await p.keyboard.press('t');
  await p.keyboard.press('p');
  await p.waitForFunction(() => !document.body.classList.contains('present'));
  // A student's F opens nothing.
  await student.page.keyboard.press('f');
  await student.page.waitForTimeout(300);
  assert.equal(await student.page.$('#fault-console'), null);
  assert.deepEqual(prof.problems, []);
  await prof.context.close();
  await student.context.close();
});

async function instructorCall(method, path, body) {
  const res = await fetch(`${server.url}${path}`, {
    method,
    headers: { authorization: `Bearer ${server.token}`, 'content-type': 'application/json' },
    body: body ? JSON.stringify(body) : undefined,
  });
  return res.status;
}

test('faults are drawn and the client recovers: retries with an idempotency key, reconnects', async () => {
  const { page, context, problems } = await openPage(browser, server.url, VIEWPORTS.laptop);
  await page.waitForSelector('.link-live');
  await page.click('#load-transcripts');
  await page.waitForSelector('#transcripts-card tr[data-student]');
  const students = () => page.$$eval('#transcripts-card tbody td:nth-child(2)', (t) => t.map((x) => x.textContent));

  // The response to the next create is dropped after the student was created: the browser
  // draws the loss, retries with the same Idempotency-Key, and gets the first answer.
  assert.equal(await instructorCall('POST', '/api/instructor/faults', { target: { path: '/transcripts' }, fault: { kind: 'dropResponse' }, times: 1 }), 200);
  await page.fill('#new-student', 'Retry Example');
  await page.click('#transcripts-card form button');
  await page.waitForFunction(() => [...document.querySelectorAll('#transcripts-card tbody td')].some((t) => t.textContent === 'Retry Example'), null, { timeout: 15_000 });
  assert.equal((await students()).filter((n) => n === 'Retry Example').length, 1, 'one student, not two');
  await page.waitForSelector('svg.diagram g.arrow.mine.lost');
  await page.waitForFunction(() => [...document.querySelectorAll('svg.diagram .note-text')].some((t) => t.textContent.includes('response dropped')));
  const posts = await page.$$eval('svg.diagram g.arrow.mine .arrow-label', (l) => l.filter((x) => x.textContent === 'POST /transcripts').length);
  assert.equal(posts, 2, 'the retry is drawn');

  // 503 with Retry-After: the browser waits and tries again.
  assert.equal(await instructorCall('POST', '/api/instructor/faults', { fault: { kind: 'status', status: 503, retryAfterS: 1 }, times: 1 }), 200);
  await page.fill('#new-student', 'After 503');
  await page.click('#transcripts-card form button');
  await page.waitForFunction(() => [...document.querySelectorAll('#transcripts-card tbody td')].some((t) => t.textContent === 'After 503'), null, { timeout: 15_000 });
  await page.waitForFunction(() => [...document.querySelectorAll('svg.diagram g.arrow.mine > title')].some((t) => t.textContent.includes(' 503 Service Unavailable at ')));
  await page.waitForTimeout(400);
  await shot(page, '5-faults-recovered');

  // WebSockets cut: the Push page draws 1006 and reconnects.
  const push = await openPage(browser, `${server.url}/push`, VIEWPORTS.laptop);
  await push.page.waitForFunction(() => document.querySelector('#channel-status')?.textContent === 'connected');
  assert.equal(await instructorCall('POST', '/api/instructor/faults', { target: { path: '/ws/events' }, fault: { kind: 'cut' } }), 200);
  await push.page.waitForFunction(() => document.querySelector('#connects').textContent === '2', null, { timeout: 15_000 });
  await push.page.waitForSelector('svg.diagram g.arrow.lost');
  assert.deepEqual(problems, []);
  await push.context.close();
  await context.close();
});

test('held messages wait for the instructor, and are drawn', async () => {
  const { page, context } = await openPage(browser, server.url, VIEWPORTS.laptop);
  await page.waitForSelector('.link-live');
  assert.equal(await instructorCall('POST', '/api/instructor/hold', { on: true, timeoutMs: 60000 }), 200);
  await page.click('#send-health');
  // The server has it (its record replaced the browser's own arrow), and holds it: no answer.
  await page.waitForFunction(() => [...document.querySelectorAll('svg.diagram g.arrow.mine:not(.local) .arrow-label')].some((t) => t.textContent === 'GET /api/health'));
  await page.waitForTimeout(300);
  assert.equal(await page.textContent('#rest-result'), '', 'no answer yet');
  assert.equal(await instructorCall('POST', '/api/instructor/release', { count: 1 }), 200);
  await page.waitForFunction(() => document.querySelector('#rest-result').textContent.includes('server ok'));
  await page.waitForFunction(() => [...document.querySelectorAll('svg.diagram .note-text')].some((t) => t.textContent.includes('released: GET /api/health')));
  assert.equal(await instructorCall('POST', '/api/instructor/hold', { on: false }), 200);
  await context.close();
});

test('every kind of fault is drawn where it happens', async () => {
  const { page, context, problems } = await openPage(browser, server.url, VIEWPORTS.laptop);
  await page.waitForSelector('.link-live');
  const note = (text) => page.waitForFunction((t) => [...document.querySelectorAll('svg.diagram .note-text')].some((n) => n.textContent.includes(t)), text, { timeout: 15_000 });
  // (A label is cut to the stretch beside its own lane; the arrow's title holds all of it.)
  const label = (text) => page.waitForFunction((t) => [...document.querySelectorAll('svg.diagram g.arrow.mine > title')].some((n) => n.textContent.includes(` ${t} at `)), text, { timeout: 15_000 });
  const once = (fault, path = '/api/health', times = 1) => instructorCall('POST', '/api/instructor/faults', { target: { path }, fault, times });
  const health = async () => {
    await page.waitForSelector('#send-health:not([disabled])');
    await page.click('#send-health');
    await page.waitForSelector('#send-health:not([disabled])', { timeout: 15_000 });
    return page.textContent('#rest-result');
  };

  // Latency: the answer comes, late, and the diagram says by how much.
  assert.equal(await once({ kind: 'latency', fixedMs: 800, jitterMs: 0 }), 200);
  const t0 = Date.now();
  assert.match(await health(), /server ok/);
  assert.ok(Date.now() - t0 >= 800, 'the answer waited');
  await note('latency +800 ms');

  // The request is dropped: no answer; the arrow is drawn lost.
  const lostBefore = await page.$$eval('svg.diagram g.arrow.mine.lost', (g) => g.length);
  // Chromium quietly resends a request whose reused connection closed without an answer,
  // so the fault is armed for more attempts than the browser makes, then cleared.
  assert.equal(await once({ kind: 'dropRequest' }, '/api/health', 5), 200);
  assert.doesNotMatch(await health(), /server ok/);
  assert.equal(await instructorCall('DELETE', '/api/instructor/faults'), 204);
  await note('request dropped');
  await page.waitForFunction((n) => document.querySelectorAll('svg.diagram g.arrow.mine.lost').length > n, lostBefore);

  // Delivered twice; answered 429 with Retry-After.
  assert.equal(await once({ kind: 'duplicate' }), 200);
  assert.match(await health(), /server ok/);
  await note('request delivered twice');
  assert.equal(await once({ kind: 'status', status: 429, retryAfterS: 1 }), 200);
  assert.match(await health(), /429|too many/i);
  await label('429 Too Many Requests');
  await note('answered 429');

  // The server is down for two seconds: the request is refused, then it answers again.
  assert.equal(await instructorCall('POST', '/api/instructor/down', { seconds: 2 }), 200);
  assert.doesNotMatch(await health(), /server ok/);
  await note('server down: GET /api/health refused');
  await page.waitForTimeout(2300);
  assert.match(await health(), /server ok/);

  // WebSockets: frames reordered, then the server closes with 1011.
  const push = await openPage(browser, `${server.url}/push`, VIEWPORTS.laptop);
  await push.page.waitForFunction(() => document.querySelector('#channel-status')?.textContent === 'connected');
  assert.equal(await instructorCall('POST', '/api/instructor/faults', { target: { path: '/ws/events' }, fault: { kind: 'close', code: 1011 } }), 200);
  await push.page.waitForFunction(() => [...document.querySelectorAll('svg.diagram .arrow-label')].some((t) => t.textContent.startsWith('Close 1011')), null, { timeout: 15_000 });
  await push.page.waitForFunction(() => document.querySelector('#connects').textContent === '2', null, { timeout: 15_000 });
  assert.equal(await once({ kind: 'reorderFrames' }, '/ws/echo'), 200);
  await page.click('#run-echo');
  await note('frames on this connection leave in swapped pairs');
  await page.waitForTimeout(400);
  await shot(page, '6-every-fault');
  assert.equal(await instructorCall('DELETE', '/api/instructor/faults'), 204);
  assert.deepEqual(problems.filter((p) => !/WebSocket|ERR_EMPTY_RESPONSE|Failed to fetch|ERR_CONNECTION/.test(p)), []);
  await push.context.close();
  await context.close();
});

test('exports: Mermaid parses, HAR validates, the trace round-trips byte for byte, no token anywhere', async () => {
  const { page, context } = await openPage(browser, server.instructor, VIEWPORTS.laptop);
  await page.waitForSelector('nav a[href="/instructor"]');
  // Traffic of every kind, including instructor calls (which carry the token).
  await page.goto(`${server.url}/instructor`);
  await page.waitForSelector('#join-urls li');
  await page.click('#reset-transcripts');
  await page.goto(`${server.url}/`);
  await page.waitForSelector('.link-live');
  await page.click('#send-health');
  await page.click('#run-echo');
  await page.waitForFunction(() => document.querySelector('#ws-result').textContent.includes('closed cleanly'));
  await page.click('#load-transcripts');
  await page.waitForSelector('#transcripts-card tr[data-student]');
  // A long session: its Mermaid is split into diagrams under Mermaid's 50,000-character limit.
  for (let i = 0; i < 12; i++) {
    await Promise.all(Array.from({ length: 80 }, () => fetch(`${server.url}/api/health`)));
  }
  // All 960 exchanges (1,920 events) have reached this page.
  await page.waitForFunction(() => Number(document.querySelector('#playback-count').textContent.split('/ ')[1]) >= 1920, null, { timeout: 30_000 });

  const grab = async (button) => {
    await page.click('.exports summary');
    const [download] = await Promise.all([page.waitForEvent('download'), page.click(button)]);
    const text = readFileSync(await download.path(), 'utf8');
    await page.click('.exports summary');
    return { name: download.suggestedFilename(), text };
  };
  const traceFile = await grab('#export-trace');
  const harFile = await grab('#export-har');
  const mermaidFile = await grab('#export-mermaid');
  const svgFile = await grab('#export-svg');
  for (const f of [traceFile, harFile, mermaidFile, svgFile]) {
    assert.ok(!f.text.includes(server.token), `${f.name} holds no token`);
    assert.ok(f.text.length > 200, f.name);
  }
  assert.ok(traceFile.text.includes('[redacted]'), 'the instructor calls are there, their token redacted');

  // HAR 1.2 against its schema.
  const { default: validator } = await import('har-validator');
  const har = JSON.parse(harFile.text);
  await validator.har(har);
  assert.ok(har.log.entries.some((e) => e._resourceType === 'websocket' && e._webSocketMessages.length >= 2));

  // Mermaid's own parser, in a Chromium page (it needs a DOM).
  const m = await browser.newPage();
  await m.setContent('<!doctype html><html><body></body></html>');
  await m.addScriptTag({ path: createRequire(import.meta.url).resolve('mermaid/dist/mermaid.min.js') });
  const parts = mermaidFile.text.split('\n%% ---- the session continues in the next diagram ----\n\n');
  assert.ok(parts.length >= 2, `a ${mermaidFile.text.length}-character session is split (${parts.length} parts)`);
  for (const part of parts) {
    const ok = await m.evaluate(async (text) => {
      try { return await window.mermaid.parse(text) ? 'ok' : 'no'; } catch (e) { return String(e); }
    }, part);
    assert.equal(ok, 'ok', part.slice(0, 400));
    assert.ok(part.length < 50000);
  }
  await m.close();

  // Import the trace (replay, nothing is sent), export again: the same bytes.
  await page.setInputFiles('#import-file', { name: 'lecture.trace.json', mimeType: 'application/json', buffer: Buffer.from(traceFile.text) });
  await page.waitForSelector('#back-to-live');
  const again = await grab('#export-trace');
  assert.equal(again.text, traceFile.text);
  await page.click('#back-to-live');
  await context.close();
});
