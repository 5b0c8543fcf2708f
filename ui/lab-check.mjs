// The lab's UI check (scripts/lab-tests.sh, after the failover scenarios):
// controller A's web UI, reached through the lab's forwarded management
// port, shows the real cluster: both controllers normal, the demo pool
// with its owner and real ALUA/ANA states, and the takeover timeline of
// the failovers the lab just ran. Screenshots: ui/screenshots/lab-*.png.
//
//   DUPLEX_LAB_UI=https://127.0.0.1:18443 DUPLEX_LAB_UI_USER=admin \
//   DUPLEX_LAB_UI_PASSWORD=... node ui/lab-check.mjs
//
// Not a `node --test` file (its name keeps it out of ui/tests/): it needs
// a lab that is up.

import { mkdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const shots = join(dirname(fileURLToPath(import.meta.url)), 'screenshots');
const url = process.env.DUPLEX_LAB_UI ?? 'https://127.0.0.1:18443';
const user = process.env.DUPLEX_LAB_UI_USER ?? 'admin';
const password = process.env.DUPLEX_LAB_UI_PASSWORD;
const pool = process.env.DUPLEX_LAB_UI_POOL ?? 'demo';
if (!password) {
  console.error('lab-check: set DUPLEX_LAB_UI_PASSWORD');
  process.exit(2);
}
// TCG guests answer slowly; every wait is still bounded.
const WAIT_MS = 120_000;

const browser = await chromium.launch({
  executablePath: '/usr/bin/chromium',
  args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  headless: true,
  timeout: 60_000,
});
const errors = [];
let failed = false;
try {
  console.log(`lab-check: chromium ${browser.version()} -> ${url}`);
  mkdirSync(shots, { recursive: true });
  const context = await browser.newContext({ ignoreHTTPSErrors: true, viewport: { width: 1280, height: 800 } });
  const page = await context.newPage();
  page.setDefaultTimeout(WAIT_MS);
  page.on('console', (m) => m.type() === 'error' && errors.push(`console error: ${m.text()}`));
  page.on('pageerror', (e) => errors.push(`page error: ${e.message}`));

  await page.goto(`${url}/`);
  await page.getByLabel('User').fill(user);
  await page.getByLabel('Password').fill(password);
  await page.getByLabel('Password').press('Enter');
  await page.getByRole('button', { name: 'Log out' }).waitFor();

  // Dashboard: both controllers normal, the pool owned by A, its states.
  const ctl = page.locator('#controllers');
  await ctl.getByText('Controller A', { exact: false }).first().waitFor();
  await ctl.getByText('Controller B', { exact: false }).first().waitFor();
  await page.waitForFunction(
    () => [...document.querySelectorAll('#controllers .controller .badge')]
      .filter((b) => b.textContent?.trim() === 'normal').length >= 2,
    null,
    { timeout: WAIT_MS },
  );
  const row = page.locator(`#pool-owners tr[data-pool="${pool}"]`);
  await row.waitFor();
  const rowText = (await row.innerText()).replace(/\s+/g, ' ');
  if (!/\bA\b/.test(rowText) || !/optimized/i.test(rowText)) {
    throw new Error(`the pool row does not show owner A, optimized: ${rowText}`);
  }
  await page.locator('#links tbody tr').first().waitFor();
  await page.locator('#hb-disks tbody tr').first().waitFor();
  await page.screenshot({ path: join(shots, 'lab-dashboard-1280.png'), fullPage: true });
  console.log(`lab-check: dashboard: ${rowText}`);

  // Cluster page: the timeline holds the lab's failovers and givebacks.
  await page.evaluate(() => { location.hash = '#/cluster'; });
  await page.locator('#timeline').waitFor();
  // A's own moves (its planned failover); B's takeovers are on B's page.
  await page.waitForFunction(() => !document.querySelector('#timeline')?.textContent?.includes('Loading…'), null, { timeout: WAIT_MS });
  const n = await page.locator('#timeline .tl-entry').count();
  const kinds = await page.locator('#timeline .tl-entry .tl-kind').allInnerTexts();
  await page.screenshot({ path: join(shots, 'lab-cluster-1280.png'), fullPage: true });
  console.log(`lab-check: timeline: ${n} entries (${kinds.join(', ')})`);
  if (errors.length) throw new Error(`the browser logged errors:\n${errors.join('\n')}`);
  console.log('lab-check: ok');
} catch (e) {
  failed = true;
  // What the page showed, for the failure.
  for (const c of browser.contexts()) {
    for (const p of c.pages()) {
      await p.screenshot({ path: join(shots, 'lab-failure-1280.png'), fullPage: true }).catch(() => {});
    }
  }
  console.error(`lab-check: FAILED: ${e.message}`);
} finally {
  await browser.close();
}
process.exit(failed ? 1 : 0);
