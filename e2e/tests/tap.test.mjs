// The wire tap: two browsers see each other's traffic live, in their own lanes, and the
// inspector shows every captured byte of a chosen exchange.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { startServer, ARTIFACTS } from '../lib/server.mjs';
import { launch, openPage, waitForLabels, VIEWPORTS } from '../lib/browser.mjs';

let server, browser;
before(async () => {
  server = await startServer({ name: 'tap-server' });
  browser = await launch();
});
after(async () => {
  await browser?.close();
  await server?.stop();
});

/** Labels of the arrows drawn in the lane titled `title`. */
async function laneLabels(page, title) {
  return page.evaluate((title) => {
    const lane = [...document.querySelectorAll('svg.diagram-head g.lane')].find((g) => g.querySelector('.lane-title')?.textContent === title);
    if (!lane) return null;
    const key = lane.dataset.lane;
    return [...document.querySelectorAll(`svg.diagram g.arrow[data-client="${key}"] .arrow-label`)].map((t) => t.textContent);
  }, title);
}

async function waitForLane(page, title, expected) {
  await page.waitForFunction(
    ({ title, expected }) => {
      const lane = [...document.querySelectorAll('svg.diagram-head g.lane')].find((g) => g.querySelector('.lane-title')?.textContent === title);
      if (!lane) return false;
      const labels = [...document.querySelectorAll(`svg.diagram g.arrow[data-client="${lane.dataset.lane}"] .arrow-label`)].map((t) => t.textContent);
      return JSON.stringify(labels) === JSON.stringify(expected);
    },
    { title, expected },
    { timeout: 10_000 },
  ).catch(async (e) => {
    throw new Error(`lane ${title}: ${JSON.stringify(await laneLabels(page, title))} ≠ ${JSON.stringify(expected)} (${e.message})`);
  });
}

test('two browsers see each other live, each in its own lane, and inspect what the other sent', async () => {
  const ana = await openPage(browser, server.url, VIEWPORTS.laptop);
  const ben = await openPage(browser, server.url, VIEWPORTS.laptop);
  for (const [who, name] of [[ana, 'Ana'], [ben, 'Ben']]) {
    await who.page.fill('#nickname', name);
    await who.page.press('#nickname', 'Enter');
    await who.page.waitForSelector('.link-live');
  }
  await ana.page.click('#send-health');
  await ben.page.fill('#new-student', 'Ben Example');
  await ben.page.click('#transcripts-card form button');

  await waitForLabels(ana.page, ['GET /api/health', '200 OK']);
  await waitForLabels(ben.page, ['POST /transcripts', '200 OK', 'GET /transcripts', '200 OK']);
  // Each sees the other, named, in a lane of its own.
  await waitForLane(ana.page, 'Ben', ['POST /transcripts', '200 OK', 'GET /transcripts', '200 OK']);
  await waitForLane(ben.page, 'Ana', ['GET /api/health', '200 OK']);
  const anaLanes = await ana.page.$$eval('svg.diagram-head .lane-title', (ts) => ts.map((t) => t.textContent));
  assert.deepEqual(anaLanes, ['This browser', 'Ben', 'Server']);

  // Ana inspects Ben's POST: request headers and body, the response and its meaning.
  const post = ana.page.locator('svg.diagram g.arrow:not(.mine)', { hasText: 'POST /transcripts' });
  await post.locator('.hit').click();
  const inspector = ana.page.locator('.inspector');
  await inspector.waitFor();
  const text = await inspector.textContent();
  for (const want of ['POST /transcripts', 'content-type', 'application/json', '"studentName": "Ben Example"', '200 OK',
    'The request succeeded', 'server time', 'Ben (c-', 'client → server', 'server node']) {
    assert.ok(text.includes(want), `inspector shows ${want}: ${text}`);
  }
  await ana.page.waitForTimeout(300);
  await ana.page.screenshot({ path: join(ARTIFACTS, 'tap-inspector-laptop.png') });
  await ana.page.keyboard.press('Escape');
  await inspector.waitFor({ state: 'detached' });

  // Filters: hiding REST leaves nothing; the path filter keeps only /transcripts.
  await ana.page.fill('#filter-path', 'transcripts');
  await ana.page.waitForFunction(() => [...document.querySelectorAll('svg.diagram .arrow-label')].every((t) => !t.textContent.includes('health')));
  await ana.page.fill('#filter-path', '');
  await ana.page.uncheck('#filter-rest');
  await ana.page.waitForFunction(() => document.querySelectorAll('svg.diagram g.arrow').length === 0);
  await ana.page.check('#filter-rest');

  for (const p of [ana, ben]) assert.deepEqual(p.problems, []);
  await ana.context.close();
  await ben.context.close();
});

test('a client without an id (curl) gets a lane of its own, named by a pseudonym, never its address', async () => {
  const { page, context } = await openPage(browser, server.url, VIEWPORTS.laptop);
  await page.waitForSelector('.link-live');
  const res = await fetch(`${server.url}/studentids?name=blake`, { headers: { 'user-agent': 'curl/8.5.0' } });
  assert.deepEqual(await res.json(), [2, 3]);
  const title = await page.waitForFunction(() =>
    [...document.querySelectorAll('svg.diagram-head .lane-title')]
      .map((t) => t.textContent).find((t) => /^curl · [0-9a-f]{8}$/.test(t)));
  assert.match(await title.jsonValue(), /^curl · [0-9a-f]{8}$/);
  assert.ok(!(await page.textContent('body')).includes('127.0.0.1'), 'no address on a student screen');
  await page.screenshot({ path: join(ARTIFACTS, 'tap-curl-lane.png') });
  await context.close();
});

test('many clients fold into one aggregate lane with counts', async () => {
  // Eight more clients, each with its own id, make a request.
  for (let i = 0; i < 8; i++) {
    await fetch(`${server.url}/transcripts/1`, { headers: { 'x-wirescope-client': `c-bulk${i}` } });
  }
  const { page, context } = await openPage(browser, server.url, VIEWPORTS.laptop);
  await page.waitForSelector('svg.diagram-head g.lane-others');
  const title = await page.$eval('svg.diagram-head g.lane-others .lane-title', (t) => t.textContent);
  assert.match(title, /^\+\d+ others$/);
  const count = await page.$eval('svg.diagram-head g.lane-others .lane-subtitle', (t) => t.textContent);
  assert.match(count, /^\d+ events$/);
  await page.setViewportSize(VIEWPORTS.phone);
  await page.waitForTimeout(300);
  await page.screenshot({ path: join(ARTIFACTS, 'tap-aggregate-phone.png'), fullPage: true });
  await context.close();
});

test('only the instructor page shows where a client connects from; an earlier session is published from it', async () => {
  const auth = { authorization: `Bearer ${server.token}` };
  // An earlier session: the one recorded so far, once a new one starts.
  const before = await (await fetch(`${server.url}/api/sessions`, { headers: auth })).json();
  const earlier = before[0].id;
  assert.equal((await fetch(`${server.url}/api/instructor/session`, { method: 'POST', headers: { ...auth, 'content-type': 'application/json' }, body: '{"name":"after"}' })).status, 204);
  assert.equal((await fetch(`${server.url}/api/sessions/${earlier}/events`)).status, 403, 'a student may not read it yet');

  for (const [name, viewport] of [['laptop', VIEWPORTS.laptop], ['phone', VIEWPORTS.phone]]) {
    const { page, context } = await openPage(browser, server.instructor, viewport);
    await page.click('nav a[href="/instructor"]');
    await page.waitForFunction(() => [...document.querySelectorAll('#moderation .address')].some((a) => a.textContent.trim() === '127.0.0.1'));
    assert.ok(await page.$('#moderation tr[data-client^="anon:"]'), 'a program without an id is listed by its pseudonym');
    await page.waitForSelector(`li[data-session="${earlier}"] .publish-session`);
    await page.screenshot({ path: join(ARTIFACTS, `tap-instructor-clients-${name}.png`), fullPage: true });
    await context.close();
  }
  const { page, context } = await openPage(browser, server.instructor, VIEWPORTS.laptop);
  await page.click('nav a[href="/instructor"]');
  await page.click(`li[data-session="${earlier}"] .publish-session`);
  await page.waitForFunction((id) => document.querySelector(`li[data-session="${id}"] .publish-session`)?.textContent.trim() === 'unpublish', earlier);
  assert.equal((await fetch(`${server.url}/api/sessions/${earlier}/events`)).status, 200, 'published: everyone may replay it');
  await context.close();

  // A student's screen: the programs at this address (this test's own requests) on one lane,
  // named by kind and pseudonym (its newest request keeps it from folding); no address.
  await fetch(`${server.url}/transcripts/1`, { headers: { 'user-agent': 'python-requests/2.31' } });
  const student = await openPage(browser, server.url, VIEWPORTS.laptop);
  await student.page.waitForFunction(() =>
    [...document.querySelectorAll('svg.diagram-head g.lane')].some((g) =>
      g.dataset.lane.startsWith('anon:') && /^[a-z]+ · [0-9a-f]{8}$/i.test(g.querySelector('.lane-title').textContent)));
  assert.ok(!(await student.page.content()).includes('127.0.0.1'), 'no address on a student screen');
  await student.context.close();
});
