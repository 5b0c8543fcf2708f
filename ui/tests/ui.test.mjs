// Browser tests of the web UI against a real simulated pair
// (scripts/sim-pair.sh): Debian's Chromium driven by playwright-core.
//
// The pair's addresses and users come from the environment
// (DUPLEX_UI_A, DUPLEX_UI_B, DUPLEX_ADMIN_USER/PASSWORD, DUPLEX_RO_USER/
// PASSWORD), or from the `env` file of DUPLEX_SIM_DIR. scripts/ui-tests.sh
// sets them. The tests run in order and build on each other (the pool,
// then the volume, then its export...), as an administrator would.
//
// Any console error or page error in the browser fails the test it
// happened in. Screenshots of every page at 1280x800 and 375x800 go to
// ui/screenshots/<page>-<width>.png.

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const here = dirname(fileURLToPath(import.meta.url));
const shots = join(here, '..', 'screenshots');

function pairEnv() {
  const env = { ...process.env };
  if (!env.DUPLEX_UI_A && env.DUPLEX_SIM_DIR) {
    for (const line of readFileSync(join(env.DUPLEX_SIM_DIR, 'env'), 'utf8').split('\n')) {
      const m = line.match(/^([A-Z_]+)=(.*)$/);
      if (m) env[m[1]] = m[2];
    }
  }
  for (const k of ['DUPLEX_UI_A', 'DUPLEX_UI_B', 'DUPLEX_ADMIN_USER', 'DUPLEX_ADMIN_PASSWORD', 'DUPLEX_RO_USER', 'DUPLEX_RO_PASSWORD']) {
    if (!env[k]) throw new Error(`${k} is not set: run through scripts/ui-tests.sh, or set DUPLEX_SIM_DIR`);
  }
  return env;
}

const E = pairEnv();
const PAGES = ['dashboard', 'cluster', 'disks', 'pools', 'volumes', 'exports', 'hosts', 'host-groups', 'users', 'audit'];
const WIDE = { width: 1280, height: 800 };
const PHONE = { width: 375, height: 800 };
// The move of a pool on the simulators takes seconds; on a loaded CI
// machine allow much more, but never wait without a bound.
const MOVE_MS = 120_000;

let browser;
/** Console and page errors per page, checked at the end of each test. */
const problems = new Map();

before(async () => {
  browser = await chromium.launch({
    executablePath: '/usr/bin/chromium',
    args: [
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
    ],
    headless: true,
    timeout: 60_000,
  });
  console.log(`chromium ${browser.version()}`);
  mkdirSync(shots, { recursive: true });
});

after(async () => {
  await browser?.close();
});

/** A fresh browser context (own cookies) and page, its errors recorded. */
async function open(viewport = WIDE) {
  const context = await browser.newContext({ ignoreHTTPSErrors: true, viewport });
  const page = await context.newPage();
  page.setDefaultTimeout(30_000);
  const list = [];
  problems.set(page, list);
  page.on('console', (m) => {
    if (m.type() === 'error') list.push(`console error: ${m.text()} (${m.location()?.url ?? ''})`);
  });
  page.on('pageerror', (e) => list.push(`page error: ${e.message}`));
  return { context, page };
}

/** Fails when the page logged an error; then closes its context. */
async function done({ context, page }) {
  const list = problems.get(page) ?? [];
  problems.delete(page);
  await context.close();
  assert.deepEqual(list, [], 'the browser logged errors');
}

async function login(page, base, user, password) {
  await page.goto(`${base}/`);
  await page.getByLabel('User').fill(user);
  await page.getByLabel('Password').fill(password);
  // The keyboard alone: Enter submits the form.
  await page.getByLabel('Password').press('Enter');
  await page.getByRole('button', { name: 'Log out' }).waitFor();
  await page.locator('.conn.open').waitFor();
}

async function go(page, path) {
  await page.evaluate((p) => {
    location.hash = `#/${p}`;
  }, path);
  await page.locator('main h1').waitFor();
}

/** The `.field` block whose label is `label`, in `scope`. */
function field(scope, label) {
  return scope.locator('.field').filter({ has: scope.page().getByText(label, { exact: true }) });
}

/** Screenshots of every page at both sizes; the pages wider than the screen. */
async function screenshots(page) {
  const overflow = [];
  for (const vp of [WIDE, PHONE]) {
    await page.setViewportSize(vp);
    for (const p of PAGES) {
      await go(page, p);
      // Wait for the page's data rather than a fixed time.
      await page.waitForFunction(() => !document.querySelector('main')?.textContent?.includes('Loading…'), null, {
        timeout: 15_000,
      });
      await page.screenshot({ path: join(shots, `${p}-${vp.width}.png`), fullPage: true });
      // Tables scroll inside their box; the page itself must fit.
      const w = await page.evaluate(() => document.documentElement.scrollWidth);
      if (w > vp.width) overflow.push(`${p} is ${w} px wide at ${vp.width} px`);
    }
  }
  await page.setViewportSize(WIDE);
  return overflow;
}

test('a wrong password is refused with the server\'s message', async () => {
  const s = await open();
  await s.page.goto(`${E.DUPLEX_UI_A}/`);
  await s.page.screenshot({ path: join(shots, 'login-1280.png') });
  await s.page.getByLabel('User').fill(E.DUPLEX_ADMIN_USER);
  await s.page.getByLabel('Password').fill('not the password');
  await s.page.getByRole('button', { name: 'Log in' }).click();
  await s.page.locator('.form-error').waitFor();
  assert.match(await s.page.locator('.form-error').innerText(), /\S/);
  await s.page.setViewportSize(PHONE);
  await s.page.screenshot({ path: join(shots, 'login-375.png') });
  await done(s);
});

test('admin logs in and the dashboard shows both controllers, live', async () => {
  const s = await open();
  await login(s.page, E.DUPLEX_UI_A, E.DUPLEX_ADMIN_USER, E.DUPLEX_ADMIN_PASSWORD);
  const ctl = s.page.locator('#controllers');
  await ctl.getByText('Controller A', { exact: false }).first().waitFor();
  await ctl.getByText('Controller B', { exact: false }).first().waitFor();
  await s.page.locator('#controllers .controller .badge', { hasText: 'normal' }).first().waitFor();
  await s.page.locator('#links tbody tr').first().waitFor();
  await s.page.locator('#hb-disks tbody tr').first().waitFor();
  // The heartbeat ages move on their own: the table changes without a reload.
  const text = () => document.querySelector('#hb-disks tbody')?.textContent;
  const before = await s.page.evaluate(text);
  await s.page.waitForFunction(
    (b) => document.querySelector('#hb-disks tbody')?.textContent !== b,
    before,
    { timeout: 15_000 },
  );
  // A reload keeps the session (auth.whoami with the cookie).
  await s.page.reload();
  await s.page.getByRole('button', { name: 'Log out' }).waitFor();
  await done(s);
});

test('admin creates a pool (with the layout table) and a volume', { timeout: 240_000 }, async () => {
  const s = await open();
  const { page } = s;
  await login(page, E.DUPLEX_UI_A, E.DUPLEX_ADMIN_USER, E.DUPLEX_ADMIN_PASSWORD);
  await go(page, 'pools');
  const form = page.locator('form[aria-label="Create a pool"]');
  await form.getByLabel('Name', { exact: true }).fill('p1');
  const disks = form.locator('input[name="disks"]');
  await disks.first().waitFor();
  await disks.nth(0).check();
  await disks.nth(1).check();
  // The table of what each layout gives with two disks.
  await form.locator('table.layouts[data-disks="2"] tbody tr').first().waitFor();
  assert.match(await form.locator('h3').innerText(), /2 disks/);
  const mirror = form.locator('table.layouts tbody tr', { hasText: 'mirror' }).first();
  assert.match(await mirror.innerText(), /50 %.*yes/s);
  await form.getByLabel('Layout').selectOption('mirror');
  await form.getByRole('button', { name: 'Create pool' }).click();
  await page.locator('#pools tr[data-pool="p1"]').waitFor({ timeout: MOVE_MS });
  await form.getByRole('button', { name: 'Create pool' }).waitFor();
  assert.equal(await form.locator('.form-error').count(), 0);

  await go(page, 'volumes');
  const vform = page.locator('form[aria-label="Create a volume"]');
  await vform.getByLabel('Name', { exact: true }).fill('v1');
  await vform.getByLabel('Pool').selectOption('p1');
  await vform.getByLabel('Size').fill('256MiB');
  await vform.getByRole('button', { name: 'Create volume' }).click();
  const row = page.locator('#volumes tr[data-volume="v1"]');
  await row.waitFor({ timeout: MOVE_MS });
  assert.match(await row.innerText(), /p1/);

  // Resize, snapshot and clone from the row's buttons; the tree shows them.
  await row.getByRole('button', { name: 'Resize' }).click();
  const dialog = page.locator('dialog[open]');
  await dialog.getByLabel('New size').fill('512MiB');
  await dialog.getByRole('button', { name: 'Resize' }).click();
  await dialog.waitFor({ state: 'detached' });
  await page.locator('#volumes tr[data-volume="v1"]', { hasText: '512' }).waitFor();
  await row.getByRole('button', { name: 'Snapshot' }).click();
  await page.locator('dialog[open]').getByLabel('Snapshot name').fill('v1-snap');
  await page.locator('dialog[open]').getByRole('button', { name: 'Take snapshot' }).click();
  await page.locator('dialog[open]').waitFor({ state: 'detached' });
  await page.locator('#tree .tree-name', { hasText: 'v1-snap' }).waitFor();
  await page.locator('#volumes tr[data-volume="v1-snap"]').getByRole('button', { name: 'Clone' }).click();
  await page.locator('dialog[open]').getByLabel('Clone name').fill('v1-clone');
  await page.locator('dialog[open]').getByRole('button', { name: 'Clone' }).click();
  await page.locator('dialog[open]').waitFor({ state: 'detached' });
  await page.locator('#tree .tree-name', { hasText: 'v1-clone' }).waitFor();
  // Delete the clone again, through its confirmation.
  await page.locator('#volumes tr[data-volume="v1-clone"]').getByRole('button', { name: 'Delete' }).click();
  await page.locator('dialog[open]').getByRole('button', { name: 'Delete v1-clone' }).click();
  await page.locator('#volumes tr[data-volume="v1-clone"]').waitFor({ state: 'detached' });
  await done(s);
});

test('form errors are shown next to the field the server names', { timeout: 120_000 }, async () => {
  const s = await open();
  const { page } = s;
  await login(page, E.DUPLEX_UI_A, E.DUPLEX_ADMIN_USER, E.DUPLEX_ADMIN_PASSWORD);
  // A bad size: volume.create (a job) names `size`.
  await go(page, 'volumes');
  const vform = page.locator('form[aria-label="Create a volume"]');
  await vform.getByLabel('Name', { exact: true }).fill('vbad');
  await vform.getByLabel('Size').fill('12 parsecs');
  await vform.getByRole('button', { name: 'Create volume' }).click();
  const size = field(vform, 'Size');
  await size.locator('.field-error').waitFor();
  assert.match(await size.locator('.field-error').innerText(), /size/i);
  assert.equal(await field(vform, 'Name').locator('.field-error').count(), 0);
  assert.equal(await size.locator('input').getAttribute('aria-invalid'), 'true');
  await vform.screenshot({ path: join(shots, 'form-error-1280.png') });
  // A bad name: config.apply names `changes[0].object.name`.
  await go(page, 'hosts');
  const hform = page.locator('form[aria-label="Add host"]');
  await hform.getByLabel('Name', { exact: true }).fill('bad name!');
  await hform.getByRole('button', { name: 'Add host' }).click();
  const name = field(hform, 'Name');
  await name.locator('.field-error').waitFor();
  assert.match(await name.locator('.field-error').innerText(), /name/i);
  await done(s);
});

test('a volume is exported to a host group and listed', { timeout: 120_000 }, async () => {
  const s = await open();
  const { page } = s;
  await login(page, E.DUPLEX_UI_A, E.DUPLEX_ADMIN_USER, E.DUPLEX_ADMIN_PASSWORD);
  await go(page, 'hosts');
  const hform = page.locator('form[aria-label="Add host"]');
  await hform.getByLabel('Name', { exact: true }).fill('h1');
  await hform.getByLabel('iSCSI initiator names').fill('iqn.1994-05.com.example:h1');
  await hform.getByRole('button', { name: 'Add host' }).click();
  await page.locator('#hosts tr[data-name="h1"]').waitFor();

  await go(page, 'host-groups');
  const gform = page.locator('form[aria-label="Add host group"]');
  await gform.getByLabel('Name', { exact: true }).fill('g1');
  await gform.getByLabel('h1').check();
  await gform.getByRole('button', { name: 'Add host group' }).click();
  await page.locator('#host-groups tr[data-name="g1"]', { hasText: 'h1' }).waitFor();

  await go(page, 'exports');
  const eform = page.locator('form[aria-label="Add export"]');
  await eform.getByLabel('Name', { exact: true }).fill('e1');
  await eform.getByLabel('Volume').selectOption('v1');
  await eform.getByLabel('Host group').selectOption('g1');
  await eform.getByLabel('Protocol').selectOption('iscsi');
  await eform.getByRole('button', { name: 'Add export' }).click();
  const row = page.locator('#exports tr[data-name="e1"]');
  await row.waitFor();
  const text = await row.innerText();
  assert.match(text, /v1/);
  assert.match(text, /g1/);
  assert.match(text, /iSCSI/);
  await done(s);
});

test('a planned failover and giveback show live on the cluster page', { timeout: 2 * MOVE_MS + 60_000 }, async () => {
  const a = await open();
  await login(a.page, E.DUPLEX_UI_A, E.DUPLEX_ADMIN_USER, E.DUPLEX_ADMIN_PASSWORD);
  await go(a.page, 'cluster');
  const ownerOnA = a.page.locator('#cluster-state li[data-pool="p1"] .owner');
  await ownerOnA.waitFor();
  assert.equal(await ownerOnA.innerText(), 'A');
  const entries = a.page.locator('#timeline .tl-entry');
  const before = await entries.count();

  await a.page.getByRole('button', { name: 'Failover…' }).click();
  const dialog = a.page.locator('dialog[open]');
  await dialog.getByLabel('Pool').selectOption('p1');
  await dialog.getByRole('button', { name: 'Fail over', exact: true }).click();
  // Live, without a reload: the owner flips to B, the timeline gains the
  // failover under its action_id with its steps, and events stream in.
  await a.page.waitForFunction(
    () => document.querySelector('#cluster-state li[data-pool="p1"] .owner')?.textContent === 'B',
    null,
    { timeout: MOVE_MS },
  );
  await a.page.waitForFunction((n) => document.querySelectorAll('#timeline .tl-entry').length > n, before, { timeout: MOVE_MS });
  const entry = entries.first();
  assert.match(await entry.locator('.tl-kind').innerText(), /failover/i);
  assert.ok((await entry.getAttribute('data-action-id'))?.length, 'the entry names its action_id');
  assert.ok((await entry.locator('.tl-step').count()) >= 3, 'the failover lists its steps');
  assert.match(await entry.innerText(), /\d+(\.\d)? (ms|s)/);
  await a.page.locator('#events li[data-topic^="cluster."], #events li[data-topic="job.changed"]').first().waitFor();
  await dialog.waitFor({ state: 'detached', timeout: MOVE_MS });
  await a.page.getByText('give back from B', { exact: false }).waitFor();

  // The giveback runs where the pool is now: on B's page.
  const b = await open();
  await login(b.page, E.DUPLEX_UI_B, E.DUPLEX_ADMIN_USER, E.DUPLEX_ADMIN_PASSWORD);
  await go(b.page, 'cluster');
  await b.page.locator('#cluster-state li[data-pool="p1"] .owner', { hasText: 'B' }).waitFor();
  await b.page.getByRole('button', { name: 'Giveback…' }).click();
  await b.page.locator('dialog[open]').getByRole('button', { name: 'Give back' }).click();
  await b.page.locator('#timeline .tl-entry .tl-kind', { hasText: /giveback/i }).first().waitFor({ timeout: MOVE_MS });
  // A's page, still open, sees the pool come home by itself.
  await a.page.waitForFunction(
    () => document.querySelector('#cluster-state li[data-pool="p1"] .owner')?.textContent === 'A',
    null,
    { timeout: MOVE_MS },
  );
  await b.page.locator('dialog[open]').waitFor({ state: 'detached', timeout: MOVE_MS });
  // B's page as an administrator saw it: its giveback and the events.
  await b.page.screenshot({ path: join(shots, 'cluster-live-B-1280.png'), fullPage: true });
  await go(a.page, 'dashboard');
  await a.page.locator('#pool-owners tr[data-pool="p1"] .alua', { hasText: 'Active/Optimized' }).waitFor({ timeout: MOVE_MS });
  await done(b);
  await done(a);
});

test('a read-only user sees no change buttons or forms anywhere', { timeout: 120_000 }, async () => {
  const s = await open();
  const { page } = s;
  await login(page, E.DUPLEX_UI_A, E.DUPLEX_RO_USER, E.DUPLEX_RO_PASSWORD);
  // Reading is not changing: these buttons are allowed.
  const allowed = new Set(['Log out', 'Menu', 'Older entries']);
  // Rows an administrator would see change buttons on: wait for them, so
  // the check runs on a page with its data.
  const rows = {
    pools: 'tr[data-pool="p1"]',
    volumes: 'tr[data-volume="v1"]',
    exports: 'tr[data-name="e1"]',
    hosts: 'tr[data-name="h1"]',
    'host-groups': 'tr[data-name="g1"]',
    users: 'tr[data-name="admin"]',
    cluster: '#timeline .tl-entry',
  };
  for (const p of PAGES) {
    await go(page, p);
    await page.waitForFunction(() => !document.querySelector('main')?.textContent?.includes('Loading…'), null, { timeout: 15_000 });
    if (rows[p]) await page.locator(`main ${rows[p]}`).first().waitFor();
    await page.waitForTimeout(200);
    const names = await page.getByRole('button').evaluateAll((bs) => bs.map((b) => b.textContent?.trim() ?? ''));
    const extra = names.filter((n) => !allowed.has(n));
    assert.deepEqual(extra, [], `page ${p} shows change buttons to a read-only user`);
    assert.equal(await page.locator('main form').count(), 0, `page ${p} shows a form to a read-only user`);
  }
  await page.locator('.who', { hasText: 'read-only' }).waitFor();
  await done(s);
});

test('every page at 1280x800 and 375x800 (screenshots; the menu collapses on a phone)', { timeout: 180_000 }, async () => {
  const s = await open();
  const { page } = s;
  await login(page, E.DUPLEX_UI_A, E.DUPLEX_ADMIN_USER, E.DUPLEX_ADMIN_PASSWORD);
  assert.deepEqual(await screenshots(page), []);
  // On a phone the navigation hides behind the Menu button.
  await page.setViewportSize(PHONE);
  const nav = page.locator('nav#nav');
  assert.equal(await nav.isVisible(), false);
  await page.getByRole('button', { name: 'Menu' }).click();
  assert.equal(await nav.isVisible(), true);
  await page.screenshot({ path: join(shots, 'menu-375.png') });
  await nav.getByRole('link', { name: 'Volumes' }).click();
  await page.locator('main h1', { hasText: 'Volumes' }).waitFor();
  assert.equal(await nav.isVisible(), false);
  // The keyboard: the first Tab reaches the skip link, which moves focus
  // to the content without leaving the page.
  await page.setViewportSize(WIDE);
  await page.reload();
  await page.locator('main h1', { hasText: 'Volumes' }).waitFor();
  await page.keyboard.press('Tab');
  assert.equal(await page.evaluate(() => document.activeElement?.className), 'skip');
  await page.keyboard.press('Enter');
  assert.equal(await page.evaluate(() => document.activeElement?.id), 'main');
  assert.match(page.url(), /#\/volumes$/);
  // Then Tab goes on through real buttons and links.
  await page.keyboard.press('Tab');
  assert.match(await page.evaluate(() => document.activeElement?.tagName ?? ''), /^(A|BUTTON|INPUT|SELECT|SUMMARY)$/);
  await done(s);
});
