// Wire → screen: how long from the server stamping an event to its arrow existing in the DOM of
// a real Chromium observer. The page (opened with ?marks) leaves a performance mark per arrow it
// draws; the load comes from a separate process (wirescope-bench load).
// usage: node bench/screen.mjs RATE... (events per second)
import { spawnSync } from 'node:child_process';
import { resolve } from 'node:path';
import { startServer } from '../lib/server.mjs';
import { launch, openPage, VIEWPORTS } from '../lib/browser.mjs';

const rates = process.argv.slice(2).map(Number).filter((n) => n > 0);
const benchBin = process.env.WIRESCOPE_BENCH_BIN ?? resolve('../target/release/wirescope-bench');
const seconds = Number(process.env.SCREEN_SECONDS ?? 10);

function pct(sorted, p) {
  return sorted.length ? sorted[Math.round((sorted.length - 1) * p)] : NaN;
}

for (const rate of rates) {
  const server = await startServer({ name: `bench-screen-${rate}` });
  const browser = await launch();
  const { page, context } = await openPage(browser, `${server.url}/?marks`, VIEWPORTS.laptop);
  await page.waitForSelector('.link-live');
  await page.waitForTimeout(500);
  const load = spawnSync(benchBin, ['load', server.url, '--rate', String(Math.ceil(rate / 2)), '--seconds', String(seconds)], { encoding: 'utf8' });
  if (load.status !== 0) throw new Error(`load failed: ${load.stderr}`);
  const sent = Number(/sent=(\d+)/.exec(load.stdout)?.[1] ?? 0) * 2;
  await page.waitForTimeout(1500);
  const latencies = await page.evaluate(() => {
    const origin = performance.timeOrigin;
    return performance.getEntriesByType('mark')
      .filter((m) => m.name.startsWith('arrow:'))
      .map((m) => origin + m.startTime - Number(m.name.split(':')[2]) / 1000);
  });
  latencies.sort((a, b) => a - b);
  const f = (x) => x.toFixed(1);
  console.log(`screen rate=${rate}/s events=${sent} drawn=${latencies.length} p50=${f(pct(latencies, 0.5))}ms p95=${f(pct(latencies, 0.95))}ms p99=${f(pct(latencies, 0.99))}ms`);
  await context.close();
  await browser.close();
  await server.stop();
}
