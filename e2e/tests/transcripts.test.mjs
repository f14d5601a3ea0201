// The API page: create a student, add a grade, delete the student, from forms built out of the
// OpenAPI document; each exchange is drawn on the diagram beside them.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { startServer, ARTIFACTS } from '../lib/server.mjs';
import { launch, openPage, arrowLabels, waitForLabels, VIEWPORTS } from '../lib/browser.mjs';

let server, browser;
before(async () => {
  server = await startServer({ name: 'transcripts-server' });
  browser = await launch();
});
after(async () => {
  await browser?.close();
  await server?.stop();
});

/** Opens an operation's form, fills it, sends it, and returns the status line shown. */
async function send(page, opId, { params = {}, body } = {}) {
  const op = page.locator(`[data-op="${opId}"]`);
  if (!(await op.evaluate((el) => el.classList.contains('open')))) await op.locator('.op-head').click();
  for (const [name, value] of Object.entries(params)) await op.locator(`[data-param="${name}"]`).fill(String(value));
  if (body !== undefined) await op.locator('[data-body]').fill(body);
  const before = await page.locator('svg.diagram g.arrow.mine').count();
  await op.locator('button.send').click();
  await page.waitForFunction((n) => document.querySelectorAll('svg.diagram g.arrow.mine').length >= n + 2, before);
  await op.locator('.response .status').waitFor();
  return {
    status: await op.locator('.response .status').textContent(),
    body: await op.locator('.response-body').textContent(),
  };
}

test('create, grade and delete a student from the API page, each exchange drawn', async () => {
  const { page, context, problems } = await openPage(browser, `${server.url}/docs`, VIEWPORTS.laptop);
  await page.waitForSelector('[data-op="addStudent"]');
  const ops = await page.$$eval('[data-op]', (els) => els.map((e) => e.dataset.op));
  for (const id of ['listTranscripts', 'addStudent', 'getTranscript', 'deleteStudent', 'addGrade', 'getGrade', 'getStudentIDs', 'health']) {
    assert.ok(ops.includes(id), `operation ${id} offered: ${ops}`);
  }
  // Loading the page fetched the document: that exchange is on the diagram already.
  await waitForLabels(page, ['GET /api/openapi.json', '200 OK']);

  // The body editor starts with a valid example.
  await page.locator('[data-op="addStudent"] .op-head').click();
  const example = JSON.parse(await page.locator('[data-op="addStudent"] [data-body]').inputValue());
  assert.equal(typeof example.studentName, 'string');

  const created = await send(page, 'addStudent', { body: '{"studentName": "e2e student"}' });
  assert.equal(created.status, '200 OK');
  const id = Number(created.body);
  assert.ok(Number.isInteger(id) && id >= 5, `new id ${created.body}`);

  const graded = await send(page, 'addGrade', { params: { studentID: id, courseNumber: 'Networks 101' }, body: '93' });
  assert.equal(graded.status, '204 No Content');
  const read = await send(page, 'getGrade', { params: { studentID: id, courseNumber: 'Networks 101' } });
  assert.equal(read.body.trim(), '93');
  const again = await send(page, 'addGrade', { params: { studentID: id, courseNumber: 'Networks 101' }, body: '50' });
  assert.equal(again.status, '400 Bad Request');
  assert.match(again.body, /already has a grade/);
  const deleted = await send(page, 'deleteStudent', { params: { studentID: id } });
  assert.equal(deleted.status, '204 No Content');
  const gone = await send(page, 'getTranscript', { params: { studentID: id } });
  assert.equal(gone.status, '400 Bad Request');
  const bad = await send(page, 'getTranscript', { params: { studentID: 'abc' } });
  assert.equal(bad.status, '422 Unprocessable Content');
  assert.match(bad.body, /"studentID": "must be an integer"/);

  const labels = await waitForLabels(page, [
    'GET /api/openapi.json', '200 OK',
    'POST /transcripts', '200 OK',
    `POST /transcripts/${id}/Networks%20101`, '204 No Content',
    `GET /transcripts/${id}/Networks%20101`, '200 OK',
    `POST /transcripts/${id}/Networks%20101`, '400 Bad Request',
    `DELETE /transcripts/${id}`, '204 No Content',
    `GET /transcripts/${id}`, '400 Bad Request',
    'GET /transcripts/abc', '422 Unprocessable Content',
  ]);
  assert.equal(labels.length, 16);
  // Error answers are drawn in the client-error tone.
  const tones = await page.$$eval('svg.diagram g.arrow.mine', (gs) => gs.map((g) => g.getAttribute('class')));
  assert.ok(tones.at(-1).includes('tone-client-error'), tones.at(-1));

  await page.waitForTimeout(400);
  await page.screenshot({ path: join(ARTIFACTS, 'docs-laptop.png'), fullPage: true });
  await page.setViewportSize(VIEWPORTS.phone);
  await page.waitForTimeout(300);
  await page.screenshot({ path: join(ARTIFACTS, 'docs-phone.png'), fullPage: true });
  await page.setViewportSize(VIEWPORTS.projector);
  await page.waitForTimeout(300);
  await page.screenshot({ path: join(ARTIFACTS, 'docs-projector.png') });
  assert.deepEqual(problems, []);
  await context.close();
});

test('the home page lists, adds and deletes students through the typed client', async () => {
  const { page, context, problems } = await openPage(browser, server.url, VIEWPORTS.laptop);
  await page.click('#load-transcripts');
  await page.waitForSelector('#transcripts-card tr[data-student="1"]');
  const names = await page.$$eval('#transcripts-card tbody tr td:nth-child(2)', (tds) => tds.map((t) => t.textContent));
  assert.deepEqual(names.slice(0, 4), ['avery', 'blake', 'blake', 'casey']);
  await page.fill('#new-student', 'from the home page');
  await page.click('#transcripts-card form button');
  await page.waitForFunction(() => [...document.querySelectorAll('#transcripts-card tbody td')].some((t) => t.textContent === 'from the home page'));
  const id = await page.$eval('#transcripts-card tbody tr:last-child', (tr) => tr.dataset.student);
  await page.click(`#transcripts-card tr[data-student="${id}"] button`);
  await page.waitForFunction((id) => !document.querySelector(`#transcripts-card tr[data-student="${id}"]`), id);
  await waitForLabels(page, [
    'GET /transcripts', '200 OK',
    'POST /transcripts', '200 OK', 'GET /transcripts', '200 OK',
    `DELETE /transcripts/${id}`, '204 No Content', 'GET /transcripts', '200 OK',
  ]);
  await page.waitForTimeout(400);
  await page.screenshot({ path: join(ARTIFACTS, 'home-transcripts-laptop.png'), fullPage: true });
  assert.deepEqual(problems, []);
  await context.close();
});

test('a repeated read is drawn as a 304, and the inside view shows the write reaching SQLite', async () => {
  // A server of its own: no other test's browsers beside this one.
  const own = await startServer({ name: 'inside-view-server' });
  const { page, context, problems } = await openPage(browser, `${own.url}/docs`, VIEWPORTS.laptop);
  await page.waitForSelector('[data-op="addStudent"]');
  await waitForLabels(page, ['GET /api/openapi.json', '200 OK']);
  const created = await send(page, 'addStudent', { body: '{"studentName": "inside view"}' });
  const id = Number(created.body);
  // The browser keeps the first answer and asks again with its ETag: the server answers 304,
  // and the page (like any page) is handed the kept copy as a 200.
  const first = await send(page, 'getTranscript', { params: { studentID: id } });
  const second = await send(page, 'getTranscript', { params: { studentID: id } });
  assert.deepEqual([first.status, second.status], ['200 OK', '200 OK']);
  assert.equal(second.body, first.body);
  const client = [
    'GET /api/openapi.json', '200 OK',
    'POST /transcripts', '200 OK',
    `GET /transcripts/${id}`, '200 OK',
    `GET /transcripts/${id}`, '304 Not Modified',
  ];
  await waitForLabels(page, client);
  const lanes = () => page.$$eval('svg.diagram-head .lane-title', (els) => els.map((e) => e.textContent));
  assert.deepEqual(await lanes(), ['This browser', 'Server']);

  // The inside view: the server's own lane and the database it wrote to; the write's step.
  await page.click('#view-inside');
  assert.equal(await page.getAttribute('#view-inside', 'aria-pressed'), 'true');
  await page.waitForFunction(() => [...document.querySelectorAll('svg.diagram-head .lane-title')].some((e) => e.textContent === 'SQLite'));
  // One server alone: the page says what its inside is, and how to see a cluster's.
  const hint = await page.locator('.inside-hint').textContent();
  assert.match(hint, /reads come from memory/);
  assert.match(hint, /scripts\/cluster --replicas 2/);
  const [me, node, database] = await lanes();
  assert.deepEqual([me, database], ['This browser', 'SQLite']);
  assert.ok(!['Server', 'This browser'].includes(node) && node.length > 0, `the server's own lane, by its name: ${node}`);
  await waitForLabels(page, [
    'GET /api/openapi.json', '200 OK',
    'POST /transcripts', 'INSERT students · 1 row', '200 OK',
    `GET /transcripts/${id}`, '200 OK',
    `GET /transcripts/${id}`, '304 Not Modified',
  ]);
  // The step goes from the server's lane to the database's, and its time is under it.
  const step = page.locator('svg.diagram g.arrow', { hasText: 'INSERT students' });
  const [x1, x2] = await step.locator('.arrow-line').evaluate((l) => [Number(l.getAttribute('x1')), Number(l.getAttribute('x2'))]);
  assert.ok(x2 > x1, `the step points at the database: ${x1} → ${x2}`);
  assert.match(await step.textContent(), /took [\d.]+ (ms|µs)/);
  await page.screenshot({ path: join(ARTIFACTS, 'inside-view-laptop.png') });
  await step.locator('.hit').click();
  await page.waitForSelector('.inspector');
  const inspector = await page.locator('.inspector').textContent();
  for (const words of ['SQLite', 'INSERT', 'students', 'client never sees']) {
    assert.ok(inspector.includes(words), `the inspector names ${words}: ${inspector}`);
  }
  await page.keyboard.press('Escape');

  // Key I switches back to what a client sees.
  await page.locator('body').click({ position: { x: 5, y: 5 } });
  await page.keyboard.press('i');
  await page.waitForFunction(() => document.querySelector('#view-client').getAttribute('aria-pressed') === 'true');
  await waitForLabels(page, client);
  assert.deepEqual(await lanes(), ['This browser', 'Server']);
  assert.equal(await page.locator('.inside-hint').count(), 0, 'the client view needs no words on the inside');
  assert.deepEqual(problems, []);
  await context.close();
  await own.stop();
});
