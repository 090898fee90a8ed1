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
  // The page as a person sees it once a notice has faded.
  await page.evaluate(() => { document.getElementById('toast').className = ''; });
  await page.waitForTimeout(300);
  // Paths on the machine that ran the test are masked: the pictures are committed.
  await page.screenshot({ path: `${shots}/${name}.png`, fullPage: true, mask: [page.locator('[data-path]')] });
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
  // Import a file, export the KB, keep an out-of-scope example.
  const imported = { id: 'console-import-001', question: '企鹅玩偶可以刻字吗', answer: '可以，下单时备注要刻的字。', category: 'orders' };
  await page.getByTestId('kb-import-file').setInputFiles({
    name: 'more.jsonl', mimeType: 'application/x-ndjson', buffer: Buffer.from(JSON.stringify(imported) + '\n'),
  });
  await until('the import is reported', async () => (await page.locator('#toast').textContent()).includes('已导入: 1 新建'));
  const download = page.waitForEvent('download');
  await page.getByText('导出', { exact: true }).click();
  const file = await (await download).path();
  const exported = (await import('node:fs')).readFileSync(file, 'utf8').trim().split('\n').map((l) => JSON.parse(l));
  if (!exported.some((e) => e.id === imported.id) || !exported.some((e) => e.id === expect.edit_id)) {
    fail(`the export lacks entries (${exported.length} lines)`);
  }
  await page.getByTestId('oos').fill(expect.out_of_scope.join('\n'));
  await page.getByTestId('oos-save').click();
  await until('the out-of-scope examples are saved', async () => {
    const r = await api('GET', '/v1/out-of-scope');
    return r.body.examples.includes(expect.out_of_scope[0]);
  });
  // The edited entry answers the new wording on /v1/match (after the live reindex).
  await until('/v1/match answers the new wording with the edited entry', async () => {
    const r = await api('POST', '/v1/match', { query: expect.new_question, hit_test: true });
    return r.body.decision === 'answer' && r.body.matches[0].faq_id === expect.edit_id;
  });

  step = 'hit test';
  await page.click('a[data-page=hit]');
  await page.fill('[data-testid=hit-query]', expect.new_question);
  await page.getByTestId('hit-run').click();
  await until('the hit test shows the decision', async () =>
    (await page.getByTestId('hit-decision').getAttribute('data-decision')) === 'answer'
    && (await text(page.getByTestId('hit-decision'))) === '直接回答');
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
  // Its placeholder answer cannot go live.
  await page.getByTestId('faq-enabled').check();
  await page.getByTestId('faq-save').click();
  await until('enabling the unanswered draft is refused', async () =>
    (await page.locator('#toast').textContent()).includes('placeholder'));

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
  // A directory that is not there is refused at once; a real model goes through the gate.
  await page.getByTestId('activate-path').fill(expect.model_dir + '-nowhere');
  await page.getByTestId('activate').click();
  await until('a missing directory is refused', async () => (await page.locator('#toast').textContent()).includes('not a directory'));
  await page.getByTestId('activate-path').fill(expect.model_dir);
  await page.getByTestId('activate').click();
  await until('the activation went through the gate and the swap', async () =>
    (await text(page.getByTestId('reload-state'))).includes('succeeded'), 600000);
  if (!(await text(page.locator('main'))).includes('demo_faq.top1')) fail("the gate's report is not shown");
  // Every model is listed with its source; the activated encoder can be rolled back.
  const all = page.getByTestId('all-models');
  await until('the encoder is listed as activated', async () => (await text(all)).includes('embedding/default')
    && (await text(all)).includes('已激活'));
  await shot(page, 'models');
  page.once('dialog', (d) => d.accept());
  await page.getByTestId('rollback-embedding/default').click();
  await until('the rollback went through', async () => (await text(all)).includes('已回滚')
    && (await text(page.getByTestId('reload-state'))).includes('succeeded'), 600000);

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
