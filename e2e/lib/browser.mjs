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

/** The labels of the arrows drawn so far, in diagram order. */
export function arrowLabels(page) {
  return page.$$eval('svg.diagram g.arrow .arrow-label', (els) => els.map((e) => e.textContent));
}

/** Waits until the diagram holds at least `n` arrows. */
export function waitForArrows(page, n, timeout = 10_000) {
  return page.waitForFunction((n) => document.querySelectorAll('svg.diagram g.arrow').length >= n, n, { timeout });
}
