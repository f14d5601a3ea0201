// Hostile input through every view and every export: a nickname, a path, a body and a chat
// line made of HTML and Mermaid directives. Nothing of it may run: every page and every
// exported file is loaded in Chromium, and a script that ran would have set `__pwned`.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { startServer, ARTIFACTS } from '../lib/server.mjs';
import { launch, openPage, VIEWPORTS } from '../lib/browser.mjs';

let server, browser;
before(async () => {
  server = await startServer({ name: 'hostile-server' });
  browser = await launch();
});
after(async () => {
  await browser?.close();
  await server?.stop();
});

const HTML = '"><img src=x onerror="window.__pwned=1"><script>window.__pwned=2</script>';
const MERMAID = '%%{init: {"securityLevel": "loose"}}%% click A call alert(1)';
const NICK = `<img src=x onerror=window.__pwned=3> ${MERMAID}`.slice(0, 40);

/** Nothing ran and no element came from the input. */
async function clean(page, where) {
  assert.equal(await page.evaluate(() => window.__pwned), undefined, `a script ran in ${where}`);
  assert.equal(await page.$('img[src="x"]'), null, `an <img> from the input was made in ${where}`);
  assert.equal(await page.$('body script:not([src])'), null, `an inline script from the input is in ${where}`);
}

test('hostile nicknames, paths, bodies and chat lines run nowhere: views and exports', async () => {
  const mallory = { 'x-wirescope-client': 'c-mallory', 'content-type': 'application/json' };
  const auth = { authorization: `Bearer ${server.token}`, 'content-type': 'application/json' };
  assert.equal((await fetch(`${server.url}/api/instructor/clients/c-mallory`, { method: 'PATCH', headers: auth, body: JSON.stringify({ nickname: NICK }) })).status, 204);
  await fetch(`${server.url}/transcripts`, { method: 'POST', headers: mallory, body: JSON.stringify({ studentName: HTML, grades: [] }) });
  await fetch(`${server.url}/transcripts/${encodeURIComponent(HTML)}`, { headers: mallory });
  await fetch(`${server.url}/studentids?name=${encodeURIComponent(MERMAID)}`, { headers: mallory });

  // The Push page: a chat line and a name made of the same.
  const push = await openPage(browser, `${server.url}/push`, VIEWPORTS.laptop);
  await push.page.fill('#nickname', NICK);
  await push.page.press('#nickname', 'Enter');
  await push.page.waitForFunction(() => document.querySelector('#channel-status')?.textContent === 'connected');
  await push.page.fill('#room-name', 'lecture');
  await push.page.click('#channel-card ~ section form.inline-form button[type=submit]');
  await push.page.fill('#chat-text', HTML);
  await push.page.press('#chat-text', 'Enter');
  await push.page.waitForFunction((t) => document.querySelector('#chat-log').textContent.includes(t), HTML);
  await clean(push.page, 'the Push page');

  // The Live page: the lanes, the arrows, and the inspector on Mallory's POST.
  const live = await openPage(browser, server.url, VIEWPORTS.laptop);
  const post = live.page.locator('svg.diagram g.arrow:not(.mine)', { hasText: 'POST /transcripts' }).first();
  await post.waitFor();
  await post.locator('.hit').click();
  await live.page.waitForFunction((t) => document.querySelector('.inspector')?.textContent.includes('window.__pwned'), HTML);
  await live.page.screenshot({ path: join(ARTIFACTS, 'hostile-live-laptop.png') });
  await clean(live.page, 'the Live page and its inspector');

  // The Instructor page: the room table holds the names.
  const prof = await openPage(browser, server.instructor, VIEWPORTS.laptop);
  await prof.page.click('nav a[href="/instructor"]');
  await prof.page.waitForSelector('#moderation tr[data-client="c-mallory"]');
  await clean(prof.page, 'the Instructor page');

  // Every export from a Live page, each loaded where it could do harm.
  const ex = await openPage(browser, server.url, VIEWPORTS.laptop);
  await ex.page.locator('svg.diagram g.arrow:not(.mine)', { hasText: 'POST /transcripts' }).first().waitFor();
  const grab = async (button) => {
    await ex.page.click('.exports summary');
    const [download] = await Promise.all([ex.page.waitForEvent('download'), ex.page.click(button)]);
    const text = readFileSync(await download.path(), 'utf8');
    await ex.page.click('.exports summary');
    return text;
  };
  const trace = await grab('#export-trace');
  const har = await grab('#export-har');
  const mermaid = await grab('#export-mermaid');
  const svg = await grab('#export-svg');
  assert.ok(trace.includes('window.__pwned') && JSON.parse(har).log, 'the input is in the files, as data');
  assert.ok(!mermaid.includes('%%{') && !mermaid.includes('<img'), `Mermaid escapes its own syntax and HTML: ${mermaid}`);

  // The SVG, opened as a document.
  const view = await browser.newPage();
  await view.setContent(svg);
  await clean(view, 'the SVG export');
  // The Mermaid file, rendered by Mermaid itself.
  await view.setContent('<!doctype html><html><body><div id="out"></div></body></html>');
  await view.addScriptTag({ path: createRequire(import.meta.url).resolve('mermaid/dist/mermaid.min.js') });
  const rendered = await view.evaluate(async (text) => {
    window.mermaid.initialize({ startOnLoad: false });
    const part = text.split('\n%% ---- the session continues in the next diagram ----\n\n')[0];
    const { svg } = await window.mermaid.render('m1', part);
    document.querySelector('#out').innerHTML = svg;
    return svg.length;
  }, mermaid);
  assert.ok(rendered > 1000, 'Mermaid drew it');
  await view.waitForTimeout(0);
  await clean(view, 'the rendered Mermaid export');
  await view.close();

  // The trace, imported back into the app and replayed.
  await ex.page.setInputFiles('#import-file', { name: 'hostile.trace.json', mimeType: 'application/json', buffer: Buffer.from(trace) });
  await ex.page.waitForSelector('#back-to-live');
  await clean(ex.page, 'a replayed import');
  for (const p of [push, live, prof, ex]) await p.context.close();
});
