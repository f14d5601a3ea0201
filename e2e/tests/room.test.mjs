// The README's 10-minute lecture script, played end to end by the roles it names: the
// instructor's laptop on a 1920×1080 projector in presentation mode, two students on phones
// (390×844) and one on a laptop (1366×768). After each step: what the room would see, and a
// screenshot of every screen (kept in $ARTIFACTS as room-<step>-<who>.png).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { startServer, ARTIFACTS } from '../lib/server.mjs';
import { launch, openPage, VIEWPORTS } from '../lib/browser.mjs';

let server, browser;
before(async () => {
  server = await startServer({ name: 'room-server' });
  browser = await launch();
});
after(async () => {
  await browser?.close();
  await server?.stop();
});

/** Every screen's picture after `step`. */
async function shots(step, screens) {
  for (const [who, s] of Object.entries(screens)) {
    await s.page.screenshot({ path: join(ARTIFACTS, `room-${step}-${who}.png`) });
    // On a phone, the diagram too (it comes after the page's first controls).
    if (s.page.viewportSize().width < 500 && await s.page.$('.diagram-card')) {
      await s.page.locator('.diagram-card').scrollIntoViewIfNeeded();
      await s.page.evaluate(() => document.querySelector('.diagram-card').scrollIntoView({ block: 'start' }));
      await s.page.screenshot({ path: join(ARTIFACTS, `room-${step}-${who}-diagram.png`) });
    }
  }
}

/** The newest drawn row's box lies inside the viewport (the followed row is on screen). */
async function newestRowInView(page) {
  const state = () => page.evaluate(() => {
    const f = document.querySelector('.diagram-frame');
    const rows = [...document.querySelectorAll('svg.diagram g.arrow, svg.diagram g.note-row')];
    const last = rows.at(-1)?.getBoundingClientRect();
    return { scrollTop: f.scrollTop, scrollHeight: f.scrollHeight, clientHeight: f.clientHeight,
      frameTop: f.getBoundingClientRect().top, rows: rows.length, last: last && [last.top, last.bottom],
      count: document.querySelector('#playback-count')?.textContent, viewport: window.innerHeight };
  });
  await page.waitForFunction(() => {
    const rows = [...document.querySelectorAll('svg.diagram g.arrow, svg.diagram g.note-row')];
    if (rows.length === 0) return false;
    const last = rows.reduce((a, b) => (b.getBoundingClientRect().bottom > a.getBoundingClientRect().bottom ? b : a));
    const r = last.getBoundingClientRect();
    return r.top >= 0 && r.bottom <= window.innerHeight && r.height > 0;
  }, null, { timeout: 5_000 }).catch(async (e) => {
    throw new Error(`the newest row is not on screen: ${JSON.stringify(await state())} (${e.message})`);
  });
}

/** Lane titles in a page's diagram head. */
const laneTitles = (page) => page.$$eval('svg.diagram-head .lane-title', (ts) => ts.map((t) => t.textContent));

const hasLabel = (page, text) => page.waitForFunction(
  (t) => [...document.querySelectorAll('svg.diagram .arrow-label, svg.diagram .note-text')].some((l) => l.textContent.includes(t)),
  text,
  { timeout: 15_000 },
);

async function nickname(page, name) {
  await page.fill('#nickname', name);
  await page.press('#nickname', 'Enter');
}

test('the lecture script, end to end, without one stumble', async () => {
  // ---- 1. Before: the instructor's link on the projector laptop; students join.
  const prof = await openPage(browser, server.instructor, VIEWPORTS.projector);
  const p = prof.page;
  await p.waitForSelector('nav a[href="/instructor"]');
  await p.click('nav a[href="/instructor"]');
  await p.waitForSelector('#join-urls li');
  const qr = await p.$eval('#qr svg', (s) => s.getBoundingClientRect().width);
  assert.ok(qr >= 240, `the QR code fills its card: ${qr}px`);
  // A click: the QR code full screen, for the back row.
  await p.click('#qr');
  await p.waitForSelector('#qr.qr-full');
  const full = await p.$eval('#qr svg', (s) => s.getBoundingClientRect().width);
  assert.ok(full >= 800, `full screen: ${full}px`);
  await shots('1-qr', { projector: { page: p } });
  await p.click('#qr');
  await p.waitForSelector('#qr:not(.qr-full)');
  // This test server listens on 127.0.0.1: the page says students cannot reach it.
  await p.waitForSelector('#loopback-warning');
  await p.fill('#session-name', 'Lecture 11.3');
  await p.click('#new-session');
  await p.waitForFunction(() => [...document.querySelectorAll('#session-list input')].some((i) => i.value === 'Lecture 11.3'));
  const overflow = await p.$$eval('.instructor .card', (cards) => cards.filter((c) => {
    const box = c.getBoundingClientRect();
    return [...c.querySelectorAll('button, input')].some((e) => e.getBoundingClientRect().right > box.right + 0.5);
  }).length);
  assert.equal(overflow, 0, 'no control sticks out of its card');
  const holdWidth = await p.$eval('input[aria-label="Hold timeout (ms)"]', (i) => i.getBoundingClientRect().width);
  assert.ok(holdWidth >= 90, `the hold timeout shows its value: ${holdWidth}px`);

  const ana = await openPage(browser, server.url, VIEWPORTS.phone);
  const ben = await openPage(browser, server.url, VIEWPORTS.phone);
  for (const [s, name] of [[ana, 'Ana'], [ben, 'Ben']]) {
    await s.page.waitForSelector('.link-live');
    await nickname(s.page, name);
  }
  // Ana acts before the projector's diagram is even open: the export must still hold it.
  await ana.page.click('#send-health');
  await ana.page.waitForFunction(() => document.querySelector('#rest-result').textContent.includes('server ok'));
  await p.click('nav a[href="/"]');
  await p.waitForSelector('.link-live');
  await p.keyboard.press('p');
  await p.waitForSelector('body.present');
  await shots('1-before', { projector: prof, ana, ben });

  // ---- 2. Pull: one request, one response each, on the student's own lane, named.
  await ana.page.click('#send-health');
  await ana.page.click('#load-transcripts');
  await ana.page.waitForSelector('#transcripts-card tr[data-student]');
  await hasLabel(p, 'GET /transcripts');
  await p.waitForFunction(() => [...document.querySelectorAll('svg.diagram-head .lane-title')].some((t) => t.textContent === 'Ana'));
  await newestRowInView(p);
  // The laptop joins late (after the names were given): every lane by its nickname.
  const cy = await openPage(browser, server.url, VIEWPORTS.laptop);
  await cy.page.waitForSelector('.link-live');
  await cy.page.waitForFunction(() => [...document.querySelectorAll('svg.diagram-head .lane-title')].some((t) => t.textContent === 'Ana'));
  assert.ok(!(await laneTitles(cy.page)).some((t) => /^c-/.test(t)), `no raw ids: ${await laneTitles(cy.page)}`);
  await nickname(cy.page, 'Cy');
  // Space pauses; three students click; → steps through, the stepped-to row in view.
  await p.keyboard.press(' ');
  await p.waitForFunction(() => document.querySelector('#playback-state').textContent.includes('paused'));
  for (const s of [ana, ben, cy]) await s.page.click('#send-health');
  await p.waitForFunction(() => {
    const [shown, total] = document.querySelector('#playback-count').textContent.split(' / ').map(Number);
    return total - shown >= 6;
  });
  for (let i = 0; i < 6; i++) {
    const before = await p.textContent('#playback-count');
    await p.keyboard.press('ArrowRight');
    await p.waitForFunction((b) => document.querySelector('#playback-count').textContent !== b, before);
    await newestRowInView(p);
  }
  // Out of presentation mode too (the laptop), the newest row is on screen. The reader who
  // scrolls back stays where they are until "↓ newest".
  await newestRowInView(cy.page);
  const frame = await cy.page.$eval('.diagram-frame', (f) => { const r = f.getBoundingClientRect(); return { x: r.x + r.width / 2, y: r.y + r.height / 2 }; });
  await cy.page.mouse.move(frame.x, frame.y);
  await cy.page.mouse.wheel(0, -400);
  await cy.page.waitForSelector('.btn.follow');
  await cy.page.click('.btn.follow');
  await cy.page.waitForSelector('.btn.follow', { state: 'detached' });
  await newestRowInView(cy.page);
  // On a phone too, a classmate who just acted has a lane of their own, by name.
  await ben.page.waitForFunction(() => {
    const titles = [...document.querySelectorAll('svg.diagram-head .lane-title')].map((t) => t.textContent);
    return titles[0] === 'You' && titles.some((t) => t === 'Ana' || t === 'Cy') && titles.at(-1) === 'Server';
  });
  await shots('2-pull', { projector: prof, ana, ben, laptop: cy });
  await p.keyboard.press('l');
  await p.waitForFunction(() => document.querySelector('#playback-state').textContent.includes('live'));
  // R then L: the diagram is back at once, not blank.
  await p.keyboard.press('r');
  await p.keyboard.press('l');
  await newestRowInView(p);

  // ---- 3. Statelessness: Ben adds a student; Ana sees it only when she asks again.
  await ben.page.click('#load-transcripts');
  await ben.page.waitForSelector('#transcripts-card tr[data-student]');
  await ben.page.fill('#new-student', 'Dana from the back row');
  await ben.page.click('#transcripts-card form button');
  await ben.page.waitForFunction(() => [...document.querySelectorAll('#transcripts-card td')].some((t) => t.textContent === 'Dana from the back row'));
  const names = () => ana.page.$$eval('#transcripts-card td', (ts) => ts.map((t) => t.textContent));
  assert.ok(!(await names()).includes('Dana from the back row'), 'pull: nobody told Ana');
  await ana.page.click('#load-transcripts');
  await ana.page.waitForFunction(() => [...document.querySelectorAll('#transcripts-card td')].some((t) => t.textContent === 'Dana from the back row'));
  await shots('3-stateless', { projector: prof, ana, ben });

  // ---- 4. Push: everyone on Push; a change made on the laptop reaches both phones at once.
  for (const s of [ana, ben]) {
    await s.page.click('nav a[href="/push"]');
    await s.page.waitForFunction(() => document.querySelector('#channel-status')?.textContent === 'connected');
  }
  await cy.page.click('#load-transcripts');
  await cy.page.waitForSelector('#transcripts-card tr[data-student]');
  await cy.page.fill('#new-student', 'Pushed Student');
  await cy.page.click('#transcripts-card form button');
  for (const s of [ana, ben]) {
    await s.page.waitForFunction(() => document.querySelectorAll('#pushed-changes li').length > 0, null, { timeout: 10_000 });
  }
  await hasLabel(p, 'POST /transcripts');
  await newestRowInView(p);
  await shots('4-push', { projector: prof, ana, ben, laptop: cy });

  // ---- 5. The Lab is the instructor's: two runs at two rates both post grades; students watch.
  await p.keyboard.press('Escape');
  await p.click('nav a[href="/lab"]');
  await p.waitForSelector('#lab-start');
  await cy.page.click('nav a[href="/lab"]');
  await cy.page.waitForSelector('#lab-watch');
  assert.equal(await cy.page.$('#lab-start'), null, 'students watch the lab');
  const setRange = (page, id, v) => page.locator(`#${id}`).fill(String(v));
  await setRange(p, 'rate', 85); // ≈ 8 changes/s
  await p.click('#lab-start');
  const posted = (page) => page.$eval('#lab-status', (s) => {
    const m = s.textContent.match(/(\d+) grades posted/);
    return m ? Number(m[1]) : -1;
  });
  await p.waitForFunction(() => /running · \d+ s · [1-9]\d* grades posted$/.test(document.querySelector('#lab-status').textContent), null, { timeout: 15_000 });
  await setRange(p, 'rate', 100); // 20 changes/s: "Start / apply" a second time
  await p.click('#lab-start');
  await p.waitForFunction(() => /running · \d+ s · ([5-9]|\d\d+) grades posted$/.test(document.querySelector('#lab-status').textContent), null, { timeout: 15_000 });
  // The laptop is told, without asking.
  await cy.page.waitForFunction(() => /^running · \d+ s · [1-9]\d* grades posted$/.test(document.querySelector('#lab-status').textContent), null, { timeout: 10_000 });
  // On a phone, the Lab fits the screen.
  await ben.page.click('nav a[href="/lab"]');
  await ben.page.waitForSelector('#lab-watch');
  await ben.page.waitForFunction(() => document.querySelector('#lab-status').textContent.startsWith('running'));
  const wide = await ben.page.evaluate(() => document.documentElement.scrollWidth);
  assert.ok(wide <= 390, `the Lab page is ${wide} px wide on a 390 px phone`);
  await shots('5-lab', { projector: prof, laptop: cy, ben });
  await p.click('#lab-stop');
  await p.waitForFunction(() => document.querySelector('#lab-status').textContent.startsWith('stopped'));
  assert.ok((await posted(p)) >= 5, 'a stopped lab keeps its figures');
  await cy.page.waitForFunction(() => document.querySelector('#lab-status').textContent.startsWith('stopped'));
  // A stopped Lab tab is quiet: what the laptop records next is the phone's request, not a poll.
  await cy.page.click('nav a[href="/"]');
  await cy.page.waitForSelector('.link-live');

  // ---- 6. Faults: F, "drop next response"; Ana adds a student: a ✕ between the right lanes.
  await p.click('nav a[href="/"]');
  await p.waitForSelector('.link-live');
  await p.keyboard.press('p');
  await p.waitForSelector('body.present');
  await p.keyboard.press('f');
  await p.waitForSelector('#fault-console');
  const covers = await p.evaluate(() => {
    const a = document.querySelector('#fault-console').getBoundingClientRect();
    const b = document.querySelector('.diagram-frame').getBoundingClientRect();
    return a.bottom > b.top && a.top < b.bottom;
  });
  assert.equal(covers, false, 'the console does not cover the diagram');
  await shots('6a-console', { projector: prof });
  await p.click('#fault-console button:has-text("drop next response")');
  await p.waitForFunction(() => !document.querySelector('#fault-console'));
  await p.waitForFunction(() => document.querySelector('#console-result')?.textContent.includes('drop response'));
  await ana.page.click('nav a[href="/"]');
  await ana.page.waitForSelector('.link-live');
  await ana.page.click('#load-transcripts');
  await ana.page.waitForSelector('#transcripts-card tr[data-student]');
  await ana.page.fill('#new-student', 'Retried Once');
  await ana.page.click('#transcripts-card form button');
  await ana.page.waitForFunction(() => [...document.querySelectorAll('#transcripts-card td')].some((t) => t.textContent === 'Retried Once'), null, { timeout: 15_000 });
  await p.waitForSelector('svg.diagram g.arrow.lost .cross');
  const cross = await p.evaluate(() => {
    const lost = [...document.querySelectorAll('svg.diagram g.arrow.lost')].pop();
    const box = lost.querySelector('.cross').getBBox();
    const x = box.x + box.width / 2;
    const lanes = [...document.querySelectorAll('svg.diagram-head g[data-lane]')].map((g) => ({
      key: g.dataset.lane,
      x: Number(g.querySelector('line').getAttribute('x1')),
    })).sort((a, b) => a.x - b.x);
    return { x, client: lost.dataset.client, lanes };
  });
  const own = cross.lanes.findIndex((l) => l.key === cross.client);
  assert.ok(own >= 0, `the lost message's lane is on screen: ${JSON.stringify(cross)}`);
  assert.ok(cross.x > cross.lanes[own].x && cross.x < cross.lanes[own + 1].x, `✕ between its lane and the next: ${JSON.stringify(cross)}`);
  for (const l of cross.lanes) assert.ok(Math.abs(l.x - cross.x) > 20, `✕ not on ${l.key}'s lifeline`);
  await newestRowInView(p);
  await shots('6b-fault', { projector: prof, ana });

  // ---- 7. After: the exports hold the whole session, whoever asks.
  await p.keyboard.press('Escape');
  await p.waitForFunction(() => !document.body.classList.contains('present'));
  const grab = async (page, button) => {
    await page.click('.exports summary');
    const [download] = await Promise.all([page.waitForEvent('download'), page.click(button)]);
    const text = readFileSync(await download.path(), 'utf8');
    await page.click('.exports summary');
    return text;
  };
  const har = JSON.parse(await grab(p, '#export-har'));
  const healths = har.log.entries.filter((e) => e.request.url.endsWith('/api/health'));
  assert.ok(healths.length >= 5, `every GET /api/health of the session, Ana's first included: ${healths.length}`);
  const mermaid = await grab(p, '#export-mermaid');
  assert.match(mermaid, / as Ana\n/);
  assert.match(mermaid, /Note over .*⚡/, 'the fault stays a note');
  assert.ok(!mermaid.includes('This browser'));
  // Once per diagram (a long session is split into several; Mermaid text writes ";" as "#59;").
  for (const part of mermaid.split('\n%% ---- the session continues in the next diagram ----\n\n')) {
    assert.equal((part.match(/The request succeeded#59; the answer is in the body/g) ?? []).length, 1, 'a meaning is explained once');
  }
  // A student's export is the same session.
  const anaHar = JSON.parse(await grab(ana.page, '#export-har'));
  assert.ok(anaHar.log.entries.length >= har.log.entries.length - 4, 'the same session from a phone');
  for (const f of [JSON.stringify(har), mermaid, JSON.stringify(anaHar)]) assert.ok(!f.includes(server.token));
  await shots('7-after', { projector: prof, ana, ben, laptop: cy });

  // ---- Through the whole lecture: not one error on any screen.
  for (const [who, s] of Object.entries({ projector: prof, ana, ben, laptop: cy })) {
    assert.deepEqual(s.problems, [], `${who}'s console`);
  }
  for (const s of [prof, ana, ben, cy]) await s.context.close();
});
