// Drives kefu's web chat widget in headless Chromium on a shop page of another origin
// (examples/widget.html, served by tests/widget.rs with the script pointed at the running
// server: `/` in Chinese, `/en` in English). Exits non-zero, naming the step, when the widget
// does not do what it must; prints a JSON report on its last line.
//
// Environment: KEFU_SHOP (the shop's URL), KEFU_SHOTS (screenshot directory), CHROMIUM (the
// browser, default /usr/bin/chromium).
import { chromium } from 'playwright-core';
import { mkdirSync } from 'node:fs';

const shop = process.env.KEFU_SHOP;
const shots = process.env.KEFU_SHOTS;
mkdirSync(shots, { recursive: true });

let step = 'start';
function fail(msg) {
  throw new Error(`[${step}] ${msg}`);
}
async function until(what, fn, ms = 30000) {
  const end = Date.now() + ms;
  let last;
  while (Date.now() < end) {
    try {
      last = await fn();
      if (last) return last;
    } catch (e) {
      last = e.message;
    }
    await new Promise((r) => setTimeout(r, 200));
  }
  fail(`${what} (last: ${JSON.stringify(last)})`);
}

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  args: ['--no-sandbox', '--disable-dev-shm-usage'],
});
const errors = [];
const report = {};
try {
  const ctx = await browser.newContext({ viewport: { width: 1200, height: 800 }, locale: 'zh-CN' });
  const page = await ctx.newPage();
  page.on('pageerror', (e) => errors.push(e.message));
  page.on('console', (m) => m.type() === 'error' && errors.push(m.text()));
  const w = (k) => page.locator(`#kefu-widget [data-kefu="${k}"]`);
  const bots = () => page.locator('#kefu-widget [data-kefu="msg-bot"]');
  const lastBot = async () => ((await bots().last().textContent()) || '').trim();
  async function say(text) {
    const n = await bots().count();
    await w('input').fill(text);
    await w('send').click();
    await until(`a reply to ${text}`, async () => (await bots().count()) > n);
    return lastBot();
  }

  step = 'open';
  await page.goto(shop + '/');
  await w('launcher').waitFor();
  if ((await w('launcher').textContent()) !== '在线咨询') fail('the launcher is not in Chinese');
  await w('launcher').click();
  await w('panel').waitFor({ state: 'visible' });
  report.greeting = await lastBot();

  step = 'follow-up';
  const ask = await say('我想退货');
  if (!ask.includes('订单号')) fail(`the refund flow did not ask for the order: ${ask}`);
  const followUp = await say('运费谁出');
  if (!followUp.includes('运费')) fail(`the follow-up was not answered in context: ${followUp}`);
  report.follow_up = followUp;
  await page.screenshot({ path: `${shots}/widget-conversation.png` });

  step = 'reload';
  const again = await say('我想退货');
  if (!again.includes('订单号')) fail(`the refund flow did not start again: ${again}`);
  const before = await bots().count();
  await page.reload();
  await w('panel').waitFor({ state: 'visible' });
  if ((await bots().count()) !== before) fail(`the transcript did not survive the reload (${await bots().count()} vs ${before})`);
  const cont = await say('KF2026112002');
  if (!cont.includes('退款原因')) fail(`the refund flow did not continue after the reload: ${cont}`);
  report.after_reload = cont;
  await say('取消');

  step = 'option';
  await say('积分');
  const options = w('options').last().locator('button');
  await until('options as buttons', async () => (await options.count()) >= 2);
  const picked = ((await options.nth(1).textContent()) || '').trim();
  const n = await bots().count();
  await options.nth(1).click();
  await until('the picked option answered', async () => (await bots().count()) > n);
  report.picked = picked;
  report.picked_answer = await lastBot();
  const mine = page.locator('#kefu-widget [data-kefu="msg-me"]');
  if (((await mine.last().textContent()) || '').trim() !== picked) fail('the pick is not shown as the question');
  if ((await options.nth(0).isEnabled())) fail('the other options stay active after a pick');

  step = 'survey';
  const bye = await say('再见');
  const stars = w('survey').last().locator('button');
  await until(`the survey after goodbye (${bye})`, async () => (await stars.count()) === 5);
  await stars.nth(4).click();
  await until('the rating thanked', async () =>
    ((await page.locator('#kefu-widget [data-kefu="msg-note"]').last().textContent()) || '').includes('感谢'));

  step = 'handoff';
  const nh = await bots().count();
  await w('person').click();
  await until('the hand-off reply', async () => (await bots().count()) > nh);
  report.handoff = await lastBot();
  await until('the hand-off banner', async () => await w('status').isVisible());
  report.banner = ((await w('status').textContent()) || '').trim();
  await page.screenshot({ path: `${shots}/widget-handoff.png` });

  step = 'english';
  const en = await ctx.newPage();
  await en.goto(shop + '/en');
  const launcher = en.locator('#kefu-widget [data-kefu="launcher"]');
  await launcher.waitFor();
  if ((await launcher.textContent()) !== 'Chat with us') fail('the launcher is not in English');
  report.visitor = await page.evaluate(() => JSON.parse(localStorage.getItem('kefu.visitor')));
  if (errors.length) fail(`page errors: ${errors.join('; ')}`);
  console.log(JSON.stringify(report));
} catch (e) {
  console.error(e.message);
  if (errors.length) console.error(`page errors: ${errors.join('; ')}`);
  process.exitCode = 1;
} finally {
  await browser.close();
}
