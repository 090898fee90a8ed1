// Drives kefu's web console in headless Chromium against a running server that tests/console.rs
// started and filled with a scripted day of traffic. Exits non-zero, naming the step, when the
// console does not show or do what it must. Screenshots of every page go to KEFU_SHOTS.
//
// Environment: KEFU_BASE (server URL), KEFU_ADMIN_KEY, KEFU_AGENT_KEY, KEFU_EXPECT (JSON from the
// test: what the dashboard must show and what to edit), KEFU_SHOTS (directory), CHROMIUM
// (the browser, default /usr/bin/chromium).
import { chromium } from 'playwright-core';
import { mkdirSync } from 'node:fs';

const base = process.env.KEFU_BASE;
const adminKey = process.env.KEFU_ADMIN_KEY;
const agentKey = process.env.KEFU_AGENT_KEY;
const expect = JSON.parse(process.env.KEFU_EXPECT);
const shots = process.env.KEFU_SHOTS;
mkdirSync(shots, { recursive: true });

let step = 'start';
function fail(msg) {
  throw new Error(`[${step}] ${msg}`);
}

async function until(what, fn, ms = 60000) {
  const end = Date.now() + ms;
  let last;
  while (Date.now() < end) {
    try {
      last = await fn();
      if (last) return last;
    } catch (e) {
      last = e.message;
    }
    await new Promise((r) => setTimeout(r, 250));
  }
  fail(`${what} (last: ${JSON.stringify(last)})`);
}

async function api(method, path, body, key = adminKey) {
  const r = await fetch(base + path, {
    method,
    headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await r.text();
  return { status: r.status, body: text ? JSON.parse(text) : null };
}

const pct = (x) => (x === null || x === undefined ? '—' : (x * 100).toFixed(1) + '%');

async function shot(page, name) {
  await page.waitForTimeout(400); // charts animate in
  await page.screenshot({ path: `${shots}/${name}.png`, fullPage: true });
}

const text = async (loc) => (await loc.textContent()).trim();

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  args: ['--no-sandbox', '--disable-dev-shm-usage'],
});
const errors = [];
try {
  const ctx = await browser.newContext({ viewport: { width: 1400, height: 900 }, locale: 'zh-CN' });
  const page = await ctx.newPage();
  page.on('pageerror', (e) => errors.push(e.message));

  step = 'login';
  await page.goto(base + '/ui/');
  await page.locator('#login-key').waitFor();
  await page.fill('#login-key', 'kefu_not_a_key');
  await page.click('#login-form button[type=submit]');
  await until('a wrong key is refused', async () => (await text(page.locator('#login-error'))).includes('not valid'));
  await shot(page, 'login');
  await page.fill('#login-key', adminKey);
  await page.click('#login-form button[type=submit]');
  await page.getByTestId('tile-volume').waitFor();
  // The key never reaches script-readable storage; the session cookie is HttpOnly.
  const cookieSeen = await page.evaluate(() => document.cookie);
  if (cookieSeen.includes('kefu_console')) fail('the session cookie is readable by scripts');
  const cookies = await ctx.cookies();
  const c = cookies.find((x) => x.name === 'kefu_console');
  if (!c || !c.httpOnly || c.sameSite !== 'Strict') fail('session cookie flags: ' + JSON.stringify(c));
  // Changing requests without the CSRF token are refused even with the cookie.
  const forged = await page.evaluate(async () => (await fetch('/v1/alerts:evaluate', { method: 'POST' })).status);
  if (forged !== 403) fail('a POST without the CSRF token answered ' + forged);

  step = 'dashboard';
  const stats = expect.stats;
  await until('the volume tile shows the scripted day', async () =>
    (await text(page.getByTestId('tile-volume').locator('.v'))) === String(expect.volume));
  const tiles = {
    conversations_n: String(stats.totals.conversations),
    answer_rate: pct(stats.totals.answer_rate),
    handoff_rate: pct(stats.totals.handoff_rate),
    no_answer_rate: pct(stats.totals.no_answer_rate),
    containment: pct(stats.totals.containment),
    helpful_share: pct(stats.totals.satisfaction.helpful_share),
    feedback_collection_rate: pct(stats.totals.feedback_collection_rate),
    waiting: String(stats.sla.waiting),
  };
  for (const [k, want] of Object.entries(tiles)) {
    const got = await text(page.getByTestId('tile-' + k).locator('.v'));
    if (got !== want) fail(`tile ${k} shows ${got}, the API says ${want}`);
  }
  if (expect.volume !== stats.totals.volume) fail(`the API counts ${stats.totals.volume} turns, the script sent ${expect.volume}`);
  await until('the volume chart is drawn', async () => page.getByTestId('chart-volume').locator('canvas').count());
  const topText = await text(page.locator('main'));
  if (!topText.includes(expect.top_question)) fail(`top questions lack ${expect.top_question}`);
  await shot(page, 'dashboard');

  step = 'alerts';
  await page.click('a[data-page=alerts]');
  await until('the SLA alert is listed', async () => (await text(page.locator('main'))).includes('sla-breach'));
  await shot(page, 'alerts');

  step = 'kb edit';
  await page.click('a[data-page=kb]');
  await page.getByTestId('kb-total').waitFor();
  await page.fill('[data-testid=kb-search]', expect.edit_id);
  await page.press('[data-testid=kb-search]', 'Enter');
  await until('the search finds the entry', async () => (await text(page.getByTestId('kb-total'))).startsWith('1 '));
  await page.locator('tr.clickable', { hasText: expect.edit_id }).click();
  const qs = page.getByTestId('faq-questions');
  await qs.waitFor();
  await qs.fill((await qs.inputValue()) + '\n' + expect.new_question);
  await page.getByTestId('faq-save').click();
  await until('the edit is saved', async () => (await page.locator('#toast').textContent()).includes('已保存'));
  await shot(page, 'kb');
  // The edited entry answers the new wording on /v1/match (after the live reindex).
  await until('/v1/match answers the new wording with the edited entry', async () => {
    const r = await api('POST', '/v1/match', { query: expect.new_question, hit_test: true });
    return r.body.decision === 'answer' && r.body.matches[0].faq_id === expect.edit_id;
  });

  step = 'hit test';
  await page.click('a[data-page=hit]');
  await page.fill('[data-testid=hit-query]', expect.new_question);
  await page.getByTestId('hit-run').click();
  await until('the hit test shows the decision', async () => (await text(page.getByTestId('hit-decision'))) === 'answer');
  const first = await text(page.getByTestId('hit-result').locator('tbody tr').first());
  if (!first.includes(expect.edit_id)) fail('the first candidate is not the edited entry: ' + first);
  if (!(await text(page.getByTestId('hit-result'))).includes('dense')) fail('the signals are not shown');
  await shot(page, 'hit-test');

  step = 'conversations';
  await page.click('a[data-page=conversations]');
  await page.fill('[data-testid=conv-search]', expect.conversation_text);
  await page.press('[data-testid=conv-search]', 'Enter');
  await page.locator('tr.clickable', { hasText: expect.conversation_text }).first().click();
  await page.getByTestId('turn').first().waitFor();
  const turn = page.getByTestId('turn').filter({ hasText: expect.conversation_text }).first();
  if (!(await text(turn)).includes('决策')) fail('the turn does not show its decision');
  await turn.getByTestId('ann-open').click();
  await turn.getByTestId('ann-faq').fill(expect.annotation_faq);
  await turn.getByTestId('ann-handoff').selectOption('true');
  await turn.getByTestId('ann-save').click();
  await until('the annotation is saved', async () => (await page.locator('#toast').textContent()).includes('标注已保存'));
  await shot(page, 'conversations');

  step = 'knowledge gaps';
  await page.click('a[data-page=gaps]');
  const gap = page.getByTestId('gap').filter({ hasText: expect.gap_text }).first();
  await gap.waitFor();
  await shot(page, 'gaps');
  await gap.getByTestId('gap-draft').click();
  const drafted = gap.getByTestId('gap-drafted');
  await drafted.waitFor();
  const draftId = await text(drafted);
  if (!draftId.startsWith('draft-')) fail('drafted ' + draftId);
  // The link opens the draft in the knowledge base editor.
  await drafted.click();
  await until('the draft opens in the editor', async () => (await page.getByTestId('faq-id').inputValue()) === draftId);
  if (await page.getByTestId('faq-enabled').isChecked()) fail('the draft is enabled');

  step = 'hand-offs';
  await page.click('a[data-page=handoffs]');
  const row = page.locator('tr.clickable', { hasText: expect.handoff_summary }).first();
  await row.waitFor();
  if (!(await text(row)).match(/剩余|已超时/)) fail('no SLA clock on the ticket: ' + (await text(row)));
  await row.click();
  await page.getByTestId('ho-accept').click();
  await until('the ticket is accepted', async () =>
    (await text(page.locator('tr.clickable', { hasText: expect.handoff_summary }).first())).includes('处理中'));
  await until('agent assist suggests replies', async () => (await page.getByTestId('assist').locator('.turn').count()) > 0);
  await shot(page, 'handoffs');

  step = 'models';
  await page.click('a[data-page=models]');
  await page.getByTestId('model-name').waitFor();
  if (!(await text(page.getByTestId('model-name'))).includes('multilingual-e5-small')) fail('the serving model is not named');
  await shot(page, 'models');

  step = 'english';
  await page.locator('#nav .lang-toggle').click();
  await page.click('a[data-page=dashboard]');
  await until('the dashboard speaks English', async () => (await text(page.locator('main h1'))) === 'Dashboard');
  await until('the tiles are back', async () => (await text(page.getByTestId('tile-volume').locator('.v'))) === String(expect.volume));
  await shot(page, 'dashboard-en');

  step = 'logout';
  await page.locator('#logout').click();
  await page.locator('#login-key').waitFor({ state: 'visible' });
  const after = await page.evaluate(async () => (await fetch('/v1/stats')).status);
  if (after !== 401) fail('after logging out /v1/stats answered ' + after);

  step = 'agent';
  await page.fill('#login-key', agentKey);
  await page.click('#login-form button[type=submit]');
  await page.locator('a[data-page=handoffs]').waitFor();
  const pages = await page.locator('#nav a').evaluateAll((as) => as.map((a) => a.dataset.page));
  if (pages.join(',') !== 'conversations,handoffs') fail('an agent sees ' + pages.join(','));
  const denied = await page.evaluate(async () => (await fetch('/v1/stats')).status);
  if (denied !== 403) fail('an agent session read /v1/stats: ' + denied);

  if (errors.length) fail('errors in the page: ' + errors.join('; '));
  console.log(JSON.stringify({ ok: true, draft: draftId }));
} finally {
  await browser.close();
}
