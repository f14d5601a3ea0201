// Debian's Chromium driven by playwright-core (never a downloaded browser).
import { chromium } from 'playwright-core';

export const CHROMIUM = process.env.CHROMIUM ?? '/usr/bin/chromium';

export function launch() {
  // launch() gives every browser a fresh, empty profile directory of its own.
  return chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
}

export const VIEWPORTS = {
  phone: { width: 390, height: 844 },
  laptop: { width: 1366, height: 768 },
  projector: { width: 1920, height: 1080 },
};

/** A page that collects console errors and uncaught exceptions into `problems`. */
export async function openPage(browser, url, viewport = VIEWPORTS.laptop) {
  const context = await browser.newContext({ viewport });
  const page = await context.newPage();
  const problems = [];
  // Chromium logs every 4xx/5xx answer as a console error; those are answers the tests ask for.
  const expected = /^Failed to load resource: the server responded with a status of [45]\d\d/;
  page.on('console', (m) => {
    if (m.type() === 'error' && !expected.test(m.text())) problems.push(`console: ${m.text()}`);
  });
  page.on('pageerror', (e) => problems.push(`pageerror: ${e.message}`));
  await page.goto(url);
  return { context, page, problems };
}

/** The labels of the arrows drawn so far, in diagram order (`mine`: this browser's only). */
export function arrowLabels(page, { mine = false } = {}) {
  const sel = mine ? 'svg.diagram g.arrow.mine .arrow-label' : 'svg.diagram g.arrow .arrow-label';
  return page.$$eval(sel, (els) => els.map((e) => e.textContent));
}

/**
 * Waits until this browser's arrows carry exactly `expected` labels, and every one of them is
 * the server's record (joined with this browser's), not only the browser's own.
 */
export async function waitForLabels(page, expected, { timeout = 10_000, confirmed = true } = {}) {
  const start = Date.now();
  let last;
  for (;;) {
    last = await arrowLabels(page, { mine: true });
    const local = await page.$$eval('svg.diagram g.arrow.mine.local', (els) => els.length);
    if (JSON.stringify(last) === JSON.stringify(expected) && (!confirmed || local === 0)) return last;
    if (Date.now() - start > timeout) {
      throw new Error(`arrows never matched.\n  expected: ${JSON.stringify(expected)}\n  actual:   ${JSON.stringify(last)} (${local} not yet confirmed by the server)`);
    }
    await page.waitForTimeout(50);
  }
}

/** Waits until the diagram holds at least `n` arrows. */
export function waitForArrows(page, n, timeout = 10_000) {
  return page.waitForFunction((n) => document.querySelectorAll('svg.diagram g.arrow').length >= n, n, { timeout });
}
