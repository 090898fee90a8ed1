// kefu's web console: one page, no build step, talking to the same /v1 API as every client.
// Logged in by a console session (an HttpOnly cookie); changing requests send its CSRF token.
'use strict';

const T = {
  zh: {
    console: '客服控制台', api_key: 'API 密钥', log_in: '登录', log_out: '退出',
    login_hint: '使用 admin 或 agent 权限的密钥登录；密钥只用于本次登录，浏览器不保存。',
    lang: 'English', dashboard: '仪表盘', alerts: '告警', kb: '知识库', hit: '命中测试',
    conversations: '会话', gaps: '知识缺口', handoffs: '人工转接', models: '模型',
    last_24h: '最近 24 小时', last_7d: '最近 7 天', today: '今天', refresh: '刷新',
    auto_refresh: '每 30 秒自动刷新', updated: '更新于',
    volume: '咨询量', answer_rate: '直接回答率', clarify_rate: '澄清率', no_answer_rate: '未回答率',
    handoff_rate: '转人工率', containment: '自助解决率', flow_success_rate: '流程成功率',
    p50: '延迟 p50', p95: '延迟 p95', helpful_share: '有帮助占比', mean_rating: '平均评分',
    csat: 'CSAT', feedback_collection_rate: '反馈收集率', conversations_n: '会话数',
    pickup_attainment: '接起达标率', resolve_attainment: '解决达标率', breached: 'SLA 超时',
    waiting: '等待中', over_time: '随时间变化', rates: '比率', top_questions: '热门问题',
    hot_intents: '热门意图', weak_spots: '满意度薄弱点', question: '问题', count: '次数', share: '占比',
    entry: '条目', negative_rate: '差评率', reask_rate: '重复提问率', answers: '回答次数',
    state: '状态', rule: '规则', value: '数值', message: '说明', started: '开始', resolved_at: '恢复',
    evaluate_now: '立即评估', firing: '告警中', resolved: '已恢复', no_alerts: '没有告警。',
    search: '搜索', category: '分类', all: '全部', id: 'ID', enabled: '启用', updated_at: '更新时间',
    new_entry: '新建条目', edit: '编辑', save: '保存', delete: '删除', cancel: '取消',
    questions_one_per_line: '问题（第一行为标准问，其余为相似问，每行一个）', answer: '答案',
    import: '导入', export: '导出', out_of_scope: '超出范围的示例（每行一个）', saved: '已保存',
    deleted: '已删除', imported: '已导入', created: '新建', updated_n: '更新', prev: '上一页', next: '下一页',
    confirm_delete: '确定删除这个条目？', entries_total: '条', format: '格式',
    hit_placeholder: '输入一个问题，看 kefu 会怎么回答', test: '测试', decision: '决策',
    corrected_query: '纠错后的问题', candidates: '候选', score: '得分', signals: '信号',
    oos_similarity: '与超出范围示例的相似度', channel: '渠道', took: '耗时',
    search_text: '搜索客户说过的话', turns: '轮次', last: '最后', first_said: '客户首句',
    transcript: '对话记录', annotate: '标注', right_entry: '正确条目 ID', right_intent: '正确意图',
    should_handoff: '应转人工', yes: '是', no: '否', unknown: '不填', annotator: '标注人',
    comment: '备注', annotation_saved: '标注已保存为带标签的反馈', intent: '意图', route: '路由',
    handed_off: '已转人工', no_conversations: '这段时间没有会话。', pick_conversation: '选择一个会话查看记录。',
    questions_n: '个未回答问题', examples: '示例', nearest: '最接近的已有条目', reasons: '原因',
    draft: '生成草稿条目', drafted: '已生成草稿条目（未启用，请补充答案后启用）：',
    no_gaps: '没有知识缺口。', open_in_kb: '在知识库中编辑',
    ticket: '工单', priority: '优先级', reason: '原因', summary: '摘要', pickup_due: '接起期限',
    resolve_due: '解决期限', agent: '坐席', accept: '接起', resolve: '解决', resolution: '处理结果',
    waiting_s: '等待中', accepted: '处理中', resolved_s: '已解决', complaint: '投诉',
    overdue: '已超时', left: '剩余', assist: '坐席助手', suggestions: '建议回复', no_tickets: '没有工单。',
    pick_ticket: '选择一个工单查看对话和建议回复。', copy: '复制',
    serving_encoder: '当前编码模型', dim: '维度', pooling: '池化', max_tokens: '最大长度',
    activation: '激活记录', activated_at: '激活时间', previous: '上一个', forced: '强制',
    gate: '门禁结果', reload: '重新加载模型', reload_state: '重新加载状态', intent_models: '意图模型',
    labels: '标签数', head: '分类头', default_model: '默认', activate_hint: '激活新模型（经过门禁评估）：',
    model_dir: '服务器上的模型目录', max_drop: '允许下降', activate: '评估并激活', force: '门禁不通过也激活',
    activating: '正在评估并切换…', check: '检查项', candidate: '候选', serving: '当前',
    all_models: '所有模型', slot: '位置', version: '版本', source: '来源', history: '历史', rollback: '回滚',
    rolled_back: '已回滚', activated: '已激活', src_activated: '已激活', src_configured: '配置', src_demo: '演示',
    'src_event log': '事件日志', rollback_confirm: '回滚到上一个版本？',
    none: '无', error: '出错了', no_rows: '暂无数据', d_answer: '直接回答', d_clarify: '澄清', d_no_answer: '未回答',
    d_handoff: '转人工', d_ask_slot: '询问信息', d_confirm: '确认', d_flow_result: '流程结果', d_with_agent: '人工处理中',
    draft_exists: '这个缺口已有草稿条目：', evaluated: '已评估', r_no_answer: '未回答', r_abandoned: '澄清后离开', r_badly_rated: '差评',
  },
  en: {
    console: 'support console', api_key: 'API key', log_in: 'Log in', log_out: 'Log out',
    login_hint: 'Log in with a key that has the admin or agent scope; it is used for this login only and not kept in the browser.',
    lang: '中文', dashboard: 'Dashboard', alerts: 'Alerts', kb: 'Knowledge base', hit: 'Hit testing',
    conversations: 'Conversations', gaps: 'Knowledge gaps', handoffs: 'Hand-offs', models: 'Models',
    last_24h: 'Last 24 hours', last_7d: 'Last 7 days', today: 'Today', refresh: 'Refresh',
    auto_refresh: 'Refreshes every 30 s', updated: 'Updated',
    volume: 'Volume', answer_rate: 'Answer rate', clarify_rate: 'Clarify rate', no_answer_rate: 'No-answer rate',
    handoff_rate: 'Hand-off rate', containment: 'Containment', flow_success_rate: 'Flow success',
    p50: 'Latency p50', p95: 'Latency p95', helpful_share: 'Helpful share', mean_rating: 'Mean rating',
    csat: 'CSAT', feedback_collection_rate: 'Feedback collected', conversations_n: 'Conversations',
    pickup_attainment: 'Pick-up within SLA', resolve_attainment: 'Resolved within SLA', breached: 'SLA breaches',
    waiting: 'Waiting', over_time: 'Over time', rates: 'Rates', top_questions: 'Top questions',
    hot_intents: 'Hot intents', weak_spots: 'Satisfaction weak spots', question: 'Question', count: 'Count', share: 'Share',
    entry: 'Entry', negative_rate: 'Negative', reask_rate: 'Re-asked', answers: 'Answers',
    state: 'State', rule: 'Rule', value: 'Value', message: 'Message', started: 'Started', resolved_at: 'Resolved',
    evaluate_now: 'Evaluate now', firing: 'firing', resolved: 'resolved', no_alerts: 'No alerts.',
    search: 'Search', category: 'Category', all: 'All', id: 'ID', enabled: 'Enabled', updated_at: 'Updated',
    new_entry: 'New entry', edit: 'Edit', save: 'Save', delete: 'Delete', cancel: 'Cancel',
    questions_one_per_line: 'Questions (the first is the standard question, the rest similar ones; one per line)', answer: 'Answer',
    import: 'Import', export: 'Export', out_of_scope: 'Out-of-scope examples (one per line)', saved: 'Saved',
    deleted: 'Deleted', imported: 'Imported', created: 'created', updated_n: 'updated', prev: 'Previous', next: 'Next',
    confirm_delete: 'Delete this entry?', entries_total: 'entries', format: 'Format',
    hit_placeholder: 'Type a question to see how kefu would answer it', test: 'Test', decision: 'Decision',
    corrected_query: 'Corrected query', candidates: 'Candidates', score: 'Score', signals: 'Signals',
    oos_similarity: 'Similarity to out-of-scope examples', channel: 'Channel', took: 'Took',
    search_text: 'Search what customers wrote', turns: 'Turns', last: 'Last', first_said: 'First message',
    transcript: 'Transcript', annotate: 'Annotate', right_entry: 'Right entry id', right_intent: 'Right intent',
    should_handoff: 'Should have handed off', yes: 'Yes', no: 'No', unknown: '—', annotator: 'Annotator',
    comment: 'Comment', annotation_saved: 'Annotation saved as labelled feedback', intent: 'Intent', route: 'Route',
    handed_off: 'handed off', no_conversations: 'No conversations in this window.', pick_conversation: 'Pick a conversation to read it.',
    questions_n: 'unanswered questions', examples: 'Examples', nearest: 'Nearest entry', reasons: 'Reasons',
    draft: 'Draft an entry', drafted: 'Draft entry created (disabled until its answer is written):',
    no_gaps: 'No knowledge gaps.', open_in_kb: 'Edit in the knowledge base',
    ticket: 'Ticket', priority: 'Priority', reason: 'Reason', summary: 'Summary', pickup_due: 'Pick up by',
    resolve_due: 'Resolve by', agent: 'Agent', accept: 'Accept', resolve: 'Resolve', resolution: 'Resolution',
    waiting_s: 'waiting', accepted: 'accepted', resolved_s: 'resolved', complaint: 'complaint',
    overdue: 'overdue', left: 'left', assist: 'Agent assist', suggestions: 'Suggested replies', no_tickets: 'No tickets.',
    pick_ticket: 'Pick a ticket to see its conversation and suggested replies.', copy: 'Copy',
    serving_encoder: 'Serving encoder', dim: 'Dimension', pooling: 'Pooling', max_tokens: 'Max tokens',
    activation: 'Activation record', activated_at: 'Activated', previous: 'Previous', forced: 'Forced',
    gate: 'Gate report', reload: 'Reload the model', reload_state: 'Reload', intent_models: 'Intent models',
    labels: 'Labels', head: 'Head', default_model: 'default', activate_hint: 'Activate a new model (through the gate):',
    model_dir: 'Model directory on the server', max_drop: 'Allowed drop', activate: 'Gate and activate', force: 'Activate even if the gate fails',
    activating: 'Gating and swapping…', check: 'Check', candidate: 'Candidate', serving: 'Serving',
    all_models: 'All models', slot: 'Slot', version: 'Version', source: 'Source', history: 'History', rollback: 'Roll back',
    rolled_back: 'Rolled back', activated: 'Activated', src_activated: 'activated', src_configured: 'configured', src_demo: 'demo',
    'src_event log': 'event log', rollback_confirm: 'Roll back to the previous version?',
    none: 'none', error: 'Something went wrong', no_rows: 'Nothing yet', d_answer: 'answer', d_clarify: 'clarify', d_no_answer: 'no answer',
    d_handoff: 'hand-off', d_ask_slot: 'asks for details', d_confirm: 'confirm', d_flow_result: 'flow result', d_with_agent: 'with a person',
    draft_exists: 'This gap has a draft entry already:', evaluated: 'Evaluated', r_no_answer: 'not answered', r_abandoned: 'left after a clarification', r_badly_rated: 'rated down',
  },
};

let lang = localStorage.getItem('kefu.lang')
  || ((navigator.language || 'zh').toLowerCase().startsWith('zh') ? 'zh' : 'en');
const t = (k) => (T[lang] && T[lang][k]) || T.en[k] || k;

const state = { who: null, csrf: '', timer: null, tick: null, skew: 0 };
// The service's time: windows and SLA clocks count in it (it may run on a moved clock).
const now = () => Date.now() + state.skew;

// ---- helpers ---------------------------------------------------------------------------------

function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
    else if (k === 'class') el.className = v;
    else if (k === 'value') el.value = v;
    else el.setAttribute(k, v === true ? '' : v);
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

const decision = (d) => (d ? t('d_' + d) : '');
const pct = (x) => (x === null || x === undefined ? '—' : (x * 100).toFixed(1) + '%');
const num = (x, d = 1) => (x === null || x === undefined ? '—' : Number(x).toFixed(d));
const when = (ms) => (ms ? new Date(ms).toLocaleString(lang === 'zh' ? 'zh-CN' : 'en-GB',
  { year: 'numeric', month: 'short', day: 'numeric', hour: '2-digit', minute: '2-digit', second: '2-digit' }) : '—');

function toast(msg, bad) {
  const el = document.getElementById('toast');
  el.textContent = msg;
  el.className = 'show' + (bad ? ' bad' : '');
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => { el.className = ''; }, bad ? 6000 : 2500);
}

class ApiError extends Error {
  constructor(status, body) {
    super((body && body.error && body.error.message) || ('HTTP ' + status));
    this.status = status;
    this.body = body;
  }
}

async function api(method, path, body, opts = {}) {
  const headers = { 'x-csrf-token': state.csrf };
  let payload;
  if (body !== undefined) {
    if (typeof body === 'string') {
      headers['content-type'] = opts.type || 'text/plain';
      payload = body;
    } else {
      headers['content-type'] = 'application/json';
      payload = JSON.stringify(body);
    }
  }
  const r = await fetch(path, { method, headers, body: payload, credentials: 'same-origin' });
  if (r.status === 401) {
    showLogin();
    throw new ApiError(401, await r.json().catch(() => null));
  }
  if (!r.ok) throw new ApiError(r.status, await r.json().catch(() => null));
  if (r.status === 204) return null;
  const ct = r.headers.get('content-type') || '';
  return ct.startsWith('application/json') ? r.json() : r.text();
}

function failed(e) {
  console.error(e);
  toast(t('error') + ': ' + e.message, true);
}

function qs(params) {
  const u = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== undefined && v !== null && v !== '') u.set(k, v);
  const s = u.toString();
  return s ? '?' + s : '';
}

function windowOf(range) {
  if (range === '7d') return { from: Math.floor((now() - 7 * 86400e3) / 1000), bucket: 'day' };
  if (range === 'today') {
    const d = new Date(now()); d.setHours(0, 0, 0, 0);
    return { from: Math.floor(d.getTime() / 1000), bucket: 'hour' };
  }
  return { bucket: 'hour' };
}

function translateStatic() {
  document.documentElement.lang = lang === 'zh' ? 'zh-CN' : 'en';
  document.querySelectorAll('[data-t]').forEach((el) => { el.textContent = t(el.dataset.t); });
  document.querySelectorAll('.lang-toggle').forEach((el) => { el.textContent = t('lang'); });
}

// ---- login -----------------------------------------------------------------------------------

function showLogin() {
  stopTimers();
  state.who = null;
  document.getElementById('shell').hidden = true;
  document.getElementById('login').hidden = false;
  document.getElementById('login-key').focus();
}

async function start() {
  translateStatic();
  document.querySelectorAll('.lang-toggle').forEach((b) => b.addEventListener('click', () => {
    lang = lang === 'zh' ? 'en' : 'zh';
    localStorage.setItem('kefu.lang', lang);
    translateStatic();
    if (state.who) { buildNav(); route(); }
  }));
  document.getElementById('login-form').addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const err = document.getElementById('login-error');
    err.textContent = '';
    const key = document.getElementById('login-key').value;
    const r = await fetch('/ui/login', {
      method: 'POST', headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ key }), credentials: 'same-origin',
    });
    const body = await r.json().catch(() => null);
    if (!r.ok) { err.textContent = (body && body.error && body.error.message) || ('HTTP ' + r.status); return; }
    document.getElementById('login-key').value = '';
    enter(body);
  });
  document.getElementById('logout').addEventListener('click', async () => {
    await fetch('/ui/logout', { method: 'POST', headers: { 'x-csrf-token': state.csrf }, credentials: 'same-origin' });
    state.csrf = '';
    showLogin();
  });
  window.addEventListener('hashchange', route);
  const r = await fetch('/ui/session', { credentials: 'same-origin' });
  if (r.ok) enter(await r.json()); else showLogin();
}

function can(scope) {
  const s = state.who ? state.who.scopes : [];
  return s.includes('admin') || s.includes(scope);
}

const PAGES = [
  ['dashboard', 'admin', dashboard], ['alerts', 'admin', alerts], ['kb', 'admin', kb],
  ['hit', 'query', hitTest], ['conversations', 'agent', conversations], ['gaps', 'admin', gaps],
  ['handoffs', 'agent', handoffs], ['models', 'admin', models],
];

function enter(who) {
  state.who = who;
  state.csrf = who.csrf;
  state.skew = who.now_ms - Date.now();
  document.getElementById('login').hidden = true;
  document.getElementById('shell').hidden = false;
  document.getElementById('who').textContent = who.name + ' · ' + who.scopes.join(', ');
  buildNav();
  route();
}

function buildNav() {
  const ul = document.getElementById('nav-links');
  ul.replaceChildren(...PAGES.filter(([, s]) => can(s)).map(([name]) =>
    h('li', {}, h('a', { href: '#/' + name, 'data-page': name }, t(name)))));
}

function stopTimers() {
  clearInterval(state.timer); state.timer = null;
  clearInterval(state.tick); state.tick = null;
}

function route() {
  if (!state.who) return;
  stopTimers();
  const [name, ...rest] = location.hash.replace(/^#\/?/, '').split('/');
  const allowed = PAGES.filter(([, s]) => can(s));
  const page = allowed.find(([n]) => n === name) || allowed[0];
  if (!page) return;
  if (page[0] !== name) history.replaceState(null, '', '#/' + page[0]);
  document.querySelectorAll('#nav a').forEach((a) => a.classList.toggle('active', a.dataset.page === page[0]));
  const main = document.getElementById('page');
  main.replaceChildren();
  main.dataset.page = page[0];
  Promise.resolve(page[2](main, rest.map(decodeURIComponent))).catch(failed);
}

function table(cols, rows, onClick) {
  const body = rows.length
    ? rows.map((r) => h('tr', onClick ? { class: 'clickable', onclick: (ev) => {
      ev.currentTarget.parentNode.querySelectorAll('tr.selected').forEach((x) => x.classList.remove('selected'));
      ev.currentTarget.classList.add('selected');
      onClick(r);
    } } : {}, cols.map((c) => h('td', {}, c[1](r)))))
    : [h('tr', {}, h('td', { colspan: cols.length, class: 'muted' }, t('no_rows')))];
  return h('table', {},
    h('thead', {}, h('tr', {}, cols.map((c) => h('th', {}, c[0])))),
    h('tbody', {}, body));
}

function rangePicker(value, onChange) {
  return h('select', { 'data-testid': 'range', onchange: (e) => onChange(e.target.value) },
    ['24h', 'today', '7d'].map((v) => h('option', { value: v, selected: v === value }, t(v === '24h' ? 'last_24h' : v === '7d' ? 'last_7d' : 'today'))));
}

// ---- dashboard -------------------------------------------------------------------------------

const TILES = [
  ['volume', (s) => s.totals.volume], ['conversations_n', (s) => s.totals.conversations],
  ['answer_rate', (s) => pct(s.totals.answer_rate)], ['clarify_rate', (s) => pct(s.totals.clarify_rate)],
  ['no_answer_rate', (s) => pct(s.totals.no_answer_rate)], ['handoff_rate', (s) => pct(s.totals.handoff_rate)],
  ['containment', (s) => pct(s.totals.containment)], ['flow_success_rate', (s) => pct(s.totals.flow_success_rate)],
  ['p50', (s) => num(s.totals.latency.p50_ms) + ' ms'], ['p95', (s) => num(s.totals.latency.p95_ms) + ' ms'],
  ['helpful_share', (s) => pct(s.totals.satisfaction.helpful_share)],
  ['mean_rating', (s) => num(s.totals.satisfaction.mean_rating, 2)], ['csat', (s) => pct(s.totals.satisfaction.csat)],
  ['feedback_collection_rate', (s) => pct(s.totals.feedback_collection_rate)],
  ['pickup_attainment', (s) => pct(s.sla.pickup_attainment)], ['resolve_attainment', (s) => pct(s.sla.resolve_attainment)],
  ['breached', (s) => s.sla.breached], ['waiting', (s) => s.sla.waiting],
];

function chart(el, option) {
  if (!window.echarts) { el.textContent = 'charts unavailable'; return; }
  const c = echarts.getInstanceByDom(el) || echarts.init(el);
  // No animation: a refresh every 30 s should not redraw from zero.
  c.setOption({ animation: false, ...option }, true);
}

async function dashboard(main) {
  let range = sessionStorage.getItem('kefu.range') || '24h';
  const tiles = h('div', { class: 'tiles', 'data-testid': 'tiles' });
  const volume = h('div', { class: 'chart', 'data-testid': 'chart-volume' });
  const rates = h('div', { class: 'chart', 'data-testid': 'chart-rates' });
  const top = h('div', {});
  const weak = h('div', {});
  const stamp = h('span', { class: 'muted', 'data-testid': 'updated' });
  main.append(
    h('div', { class: 'row' }, h('h1', { class: 'grow' }, t('dashboard')),
      rangePicker(range, (v) => { range = v; sessionStorage.setItem('kefu.range', v); load(); }),
      h('button', { class: 'secondary', onclick: () => load() }, t('refresh'))),
    h('p', { class: 'muted' }, t('auto_refresh'), ' · ', stamp),
    tiles,
    h('div', { class: 'grid2' },
      h('div', { class: 'card' }, h('h2', {}, t('volume') + ' · ' + t('over_time')), volume),
      h('div', { class: 'card' }, h('h2', {}, t('rates') + ' · ' + t('over_time')), rates)),
    h('div', { class: 'grid2' }, h('div', { class: 'card' }, top), h('div', { class: 'card' }, weak)),
  );
  async function load() {
    const w = windowOf(range);
    const [s, tq, ws] = await Promise.all([
      api('GET', '/v1/stats' + qs(w)),
      api('GET', '/v1/stats/top-questions' + qs({ from: w.from, limit: 10 })),
      api('GET', '/v1/stats/weak-spots' + qs({ from: w.from, limit: 10 })),
    ]);
    tiles.replaceChildren(...TILES.map(([k, f]) =>
      h('div', { class: 'tile', 'data-testid': 'tile-' + k }, h('div', { class: 'k' }, t(k)), h('div', { class: 'v' }, f(s)))));
    const xs = s.series.map((p) => new Date(p.start_ms).toLocaleString(lang === 'zh' ? 'zh-CN' : 'en-GB',
      w.bucket === 'day' ? { month: 'numeric', day: 'numeric' } : { hour: '2-digit', minute: '2-digit' }));
    chart(volume, {
      tooltip: { trigger: 'axis' }, grid: { left: 40, right: 16, top: 16, bottom: 28 },
      xAxis: { type: 'category', data: xs }, yAxis: { type: 'value', minInterval: 1 },
      series: [{ name: t('volume'), type: 'bar', data: s.series.map((p) => p.volume), itemStyle: { color: '#1f6feb' } }],
    });
    const rate = (k) => s.series.map((p) => (p[k] === null ? null : +(p[k] * 100).toFixed(1)));
    chart(rates, {
      tooltip: { trigger: 'axis' }, legend: { top: 0 }, grid: { left: 40, right: 16, top: 30, bottom: 28 },
      xAxis: { type: 'category', data: xs }, yAxis: { type: 'value', max: 100, axisLabel: { formatter: '{value}%' } },
      series: ['answer_rate', 'handoff_rate', 'no_answer_rate'].map((k) => ({ name: t(k), type: 'line', connectNulls: true, data: rate(k) })),
    });
    top.replaceChildren(h('h2', {}, t('top_questions')),
      table([[t('question'), (r) => r.key], [t('count'), (r) => r.count], [t('share'), (r) => pct(r.share)]], tq.questions),
      h('h2', {}, t('hot_intents')),
      table([[t('intent'), (r) => r.label || r.key], [t('count'), (r) => r.count]], tq.intents));
    weak.replaceChildren(h('h2', {}, t('weak_spots')),
      table([[t('entry'), (r) => r.label ? `${r.key} · ${r.label}` : r.key], [t('answers'), (r) => r.answers],
        [t('negative_rate'), (r) => pct(r.negative_rate)], [t('reask_rate'), (r) => pct(r.reask_rate)]], ws.entries));
    stamp.textContent = t('updated') + ' ' + new Date(now()).toLocaleTimeString();
  }
  await load();
  state.timer = setInterval(() => load().catch(failed), 30000);
}

// ---- alerts ----------------------------------------------------------------------------------

async function alerts(main) {
  const list = h('div', {});
  main.append(h('div', { class: 'row' }, h('h1', { class: 'grow' }, t('alerts')),
    h('button', { class: 'secondary', onclick: async () => {
      try { await api('POST', '/v1/alerts:evaluate'); await load(); toast(t('evaluated')); } catch (e) { failed(e); }
    } }, t('evaluate_now'))), list);
  async function load() {
    const r = await api('GET', '/v1/alerts?limit=200');
    list.replaceChildren(r.alerts.length ? table([
      [t('state'), (a) => h('span', { class: 'badge ' + (a.state === 'firing' ? 'bad' : 'good') }, t(a.state))],
      [t('rule'), (a) => a.rule + (a.key ? ' · ' + a.key : '')], [t('message'), (a) => a.message],
      [t('value'), (a) => num(a.value, 3)], [t('started'), (a) => when(a.started_ms)], [t('resolved_at'), (a) => when(a.resolved_ms)],
    ], r.alerts) : h('p', { class: 'muted' }, t('no_alerts')));
  }
  await load();
  state.timer = setInterval(() => load().catch(failed), 30000);
}

// ---- knowledge base --------------------------------------------------------------------------

async function kb(main, [editId]) {
  const PAGE = 50;
  let offset = 0;
  const q = h('input', { type: 'search', placeholder: t('search'), 'data-testid': 'kb-search' });
  const cat = h('input', { placeholder: t('category'), size: 12, 'data-testid': 'kb-category' });
  const list = h('div', {});
  const editor = h('div', {});
  const file = h('input', { type: 'file', accept: '.jsonl,.csv,.md,.json', 'data-testid': 'kb-import-file', hidden: true });
  const oos = h('textarea', { 'data-testid': 'oos' });
  main.append(
    h('div', { class: 'row' }, h('h1', { class: 'grow' }, t('kb')),
      h('button', { onclick: () => edit(null), 'data-testid': 'kb-new' }, t('new_entry')),
      h('button', { class: 'secondary', onclick: () => file.click() }, t('import')), file,
      h('button', { class: 'secondary', onclick: () => exportAll().catch(failed) }, t('export'))),
    h('form', { class: 'row', onsubmit: (e) => { e.preventDefault(); offset = 0; load().catch(failed); } },
      q, cat, h('button', { type: 'submit', class: 'secondary' }, t('search'))),
    h('div', { class: 'split' }, list, editor),
    h('div', { class: 'card' }, h('h2', {}, t('out_of_scope')), oos,
      h('button', { onclick: () => saveOos().catch(failed), 'data-testid': 'oos-save' }, t('save'))),
  );
  file.addEventListener('change', async () => {
    const f = file.files[0];
    if (!f) return;
    const format = f.name.endsWith('.csv') ? 'csv' : f.name.endsWith('.md') ? 'md' : 'jsonl';
    try {
      const r = await api('POST', '/v1/faqs:import?format=' + format, await f.text(), { type: 'text/plain' });
      toast(`${t('imported')}: ${r.created} ${t('created')}, ${r.updated} ${t('updated_n')}`);
      await load();
    } catch (e) {
      const problems = e.body && e.body.error && e.body.error.problems;
      toast(e.message + (problems ? ': ' + problems.slice(0, 3).map((p) => `#${p.line} ${p.message}`).join('; ') : ''), true);
    }
    file.value = '';
  });
  async function exportAll() {
    const text = await api('GET', '/v1/faqs:export?format=jsonl');
    const a = h('a', { href: URL.createObjectURL(new Blob([text], { type: 'application/x-ndjson' })), download: 'kefu-faqs.jsonl' });
    document.body.append(a); a.click(); a.remove();
  }
  async function saveOos() {
    const examples = oos.value.split('\n').map((s) => s.trim()).filter(Boolean);
    if (examples.length) await api('PUT', '/v1/out-of-scope', { examples });
    else await api('DELETE', '/v1/out-of-scope');
    toast(t('saved'));
  }
  async function load() {
    const r = await api('GET', '/v1/faqs' + qs({ q: q.value, category: cat.value, offset, limit: PAGE }));
    list.replaceChildren(
      h('p', { class: 'muted', 'data-testid': 'kb-total' }, `${r.total} ${t('entries_total')}`),
      table([[t('id'), (e) => h('span', { class: 'mono' }, e.id)], [t('question'), (e) => e.question],
        [t('category'), (e) => e.category || ''],
        [t('enabled'), (e) => h('span', { class: 'badge ' + (e.enabled === false ? 'warn' : 'good') }, e.enabled === false ? t('no') : t('yes'))]],
      r.entries, (e) => edit(e)),
      h('div', { class: 'row pager' },
        h('button', { class: 'secondary', disabled: offset === 0, onclick: () => { offset = Math.max(0, offset - PAGE); load().catch(failed); } }, t('prev')),
        h('button', { class: 'secondary', disabled: offset + PAGE >= r.total, onclick: () => { offset += PAGE; load().catch(failed); } }, t('next'))));
  }
  function edit(e) {
    const isNew = !e;
    e = e || { id: '', question: '', similar: [], answer: '', category: '', enabled: true };
    const id = h('input', { value: e.id, disabled: !isNew, 'data-testid': 'faq-id' });
    const qsEl = h('textarea', { 'data-testid': 'faq-questions' });
    qsEl.value = [e.question, ...(e.similar || [])].join('\n');
    const ans = h('textarea', { 'data-testid': 'faq-answer', rows: 6 });
    ans.value = e.answer || '';
    const category = h('input', { value: e.category || '', 'data-testid': 'faq-category' });
    const enabled = h('input', { type: 'checkbox', 'data-testid': 'faq-enabled' });
    enabled.checked = e.enabled !== false;
    async function save(ev) {
      ev.preventDefault();
      const lines = qsEl.value.split('\n').map((s) => s.trim()).filter(Boolean);
      const body = { ...e, id: id.value.trim(), question: lines[0] || '', similar: lines.slice(1), answer: ans.value, enabled: enabled.checked };
      delete body.created_at; delete body.updated_at;
      if (category.value.trim()) body.category = category.value.trim(); else delete body.category;
      try {
        if (isNew) await api('POST', '/v1/faqs', body);
        else await api('PUT', '/v1/faqs/' + encodeURIComponent(body.id), body);
        toast(t('saved'));
        await load();
        edit(await api('GET', '/v1/faqs/' + encodeURIComponent(body.id)));
      } catch (err) { failed(err); }
    }
    async function remove() {
      if (!confirm(t('confirm_delete'))) return;
      await api('DELETE', '/v1/faqs/' + encodeURIComponent(e.id));
      toast(t('deleted'));
      editor.replaceChildren();
      await load();
    }
    editor.replaceChildren(h('form', { class: 'card', onsubmit: save, 'data-testid': 'faq-editor' },
      h('h2', {}, isNew ? t('new_entry') : t('edit') + ' ' + e.id),
      h('label', {}, t('id'), id), h('label', {}, t('questions_one_per_line'), qsEl),
      h('label', {}, t('answer'), ans), h('label', {}, t('category'), category),
      h('label', { class: 'inline' }, enabled, t('enabled')),
      h('div', { class: 'row' }, h('button', { type: 'submit', 'data-testid': 'faq-save' }, t('save')),
        isNew ? null : h('button', { type: 'button', class: 'danger', onclick: () => remove().catch(failed) }, t('delete')),
        h('button', { type: 'button', class: 'secondary', onclick: () => editor.replaceChildren() }, t('cancel')))));
    editor.scrollIntoView({ block: 'nearest' });
  }
  await load();
  api('GET', '/v1/out-of-scope').then((r) => { oos.value = r.examples.join('\n'); }).catch(() => {});
  if (editId) {
    try { edit(await api('GET', '/v1/faqs/' + encodeURIComponent(editId))); } catch (e) { failed(e); }
  }
}

// ---- hit testing -----------------------------------------------------------------------------

async function hitTest(main) {
  const input = h('input', { class: 'grow', placeholder: t('hit_placeholder'), 'data-testid': 'hit-query' });
  const channel = h('select', {}, ['', 'web', 'app', 'wechat', 'sms'].map((c) => h('option', { value: c }, c || t('channel'))));
  const out = h('div', { 'data-testid': 'hit-result' });
  main.append(h('h1', {}, t('hit')),
    h('form', { class: 'row card', onsubmit: (e) => { e.preventDefault(); run().catch(failed); } },
      input, channel, h('button', { type: 'submit', 'data-testid': 'hit-run' }, t('test'))), out);
  input.focus();
  async function run() {
    const body = { query: input.value, explain: true, hit_test: true, top_k: 5 };
    if (channel.value) body.channel = channel.value;
    const r = await api('POST', '/v1/match', body);
    const cls = r.decision === 'answer' ? 'good' : r.decision === 'clarify' ? 'warn' : 'bad';
    out.replaceChildren(h('div', { class: 'card' },
      h('p', {}, t('decision') + ': ', h('span', { class: 'badge ' + cls, 'data-testid': 'hit-decision', 'data-decision': r.decision }, decision(r.decision)),
        h('span', { class: 'muted' }, `  ${t('took')} ${num(r.took_ms)} ms · ${r.model}`)),
      r.corrected_query ? h('p', { 'data-testid': 'hit-corrected' }, t('corrected_query') + ': ' + r.corrected_query) : null,
      r.out_of_scope_similarity !== null && r.out_of_scope_similarity !== undefined
        ? h('p', { class: 'muted' }, t('oos_similarity') + ': ' + num(r.out_of_scope_similarity, 3)) : null,
      h('h2', {}, t('candidates')),
      table([[t('score'), (m) => num(m.score, 3)], [t('entry'), (m) => h('span', { class: 'mono' }, m.faq_id)],
        [t('question'), (m) => [m.question, m.matched_text !== m.question ? h('div', { class: 'muted' }, m.matched_text) : null]],
        [t('signals'), (m) => m.signals ? h('span', { class: 'signals' },
          `dense ${num(m.signals.dense, 3)} · lexical ${num(m.signals.lexical, 3)} · fuzzy ${num(m.signals.fuzzy, 3)} · answer ${num(m.signals.answer, 3)}`) : ''],
        [t('answer'), (m) => h('div', { class: 'muted' }, m.answer.length > 120 ? m.answer.slice(0, 120) + '…' : m.answer)]],
      r.matches)));
  }
}

// ---- conversations ---------------------------------------------------------------------------

function transcript(turns, annotate) {
  return turns.map((x) => h('div', { class: 'turn' + (x.handoff ? ' handoff' : ''), 'data-testid': 'turn' },
    h('div', {}, x.text),
    h('div', { class: 'meta' }, [when(x.at_ms), x.kind, x.decision && `${t('decision')}: ${decision(x.decision)}`,
      x.faq_id && `${t('entry')}: ${x.faq_id}${x.score !== null && x.score !== undefined ? ' (' + num(x.score, 3) + ')' : ''}`,
      x.intent && `${t('intent')}: ${x.intent}${x.confidence ? ' (' + num(x.confidence, 2) + ')' : ''}`,
      x.route && `${t('route')}: ${x.route}`, x.flow && `flow: ${x.flow} ${x.flow_status || ''}`,
      x.handoff && t('handed_off')].filter(Boolean).join(' · ')),
    annotate && x.turn_id ? annotate(x) : null));
}

async function conversations(main, [openId]) {
  let range = '7d';
  const q = h('input', { type: 'search', class: 'grow', placeholder: t('search_text'), 'data-testid': 'conv-search' });
  const list = h('div', {});
  const detail = h('div', { 'data-testid': 'conv-detail' }, h('p', { class: 'muted' }, t('pick_conversation')));
  main.append(h('h1', {}, t('conversations')),
    h('form', { class: 'row', onsubmit: (e) => { e.preventDefault(); load().catch(failed); } },
      q, rangePicker(range, (v) => { range = v; load().catch(failed); }), h('button', { type: 'submit', class: 'secondary' }, t('search'))),
    h('div', { class: 'split' }, list, detail));
  async function load() {
    const r = await api('GET', '/v1/conversations' + qs({ from: windowOf(range).from, q: q.value, limit: 200 }));
    list.replaceChildren(r.conversations.length ? table([
      [t('last'), (c) => when(c.last_ms)], [t('first_said'), (c) => c.first_text],
      [t('turns'), (c) => c.turns], [t('channel'), (c) => c.channel || ''],
      [t('handoffs'), (c) => c.handoff ? h('span', { class: 'badge warn' }, t('handed_off')) : ''],
    ], r.conversations, (c) => open(c.session_id)) : h('p', { class: 'muted' }, t('no_conversations')));
  }
  async function open(id) {
    const c = await api('GET', '/v1/conversations/' + encodeURIComponent(id));
    detail.replaceChildren(h('div', { class: 'card' }, h('h2', {}, t('transcript') + ' ', h('span', { class: 'mono' }, id)),
      transcript(c.turns, annotateForm)));
  }
  function annotateForm(x) {
    const faq = h('input', { placeholder: x.faq_id ? `${t('right_entry')} (${x.faq_id})` : t('right_entry'), 'data-testid': 'ann-faq' });
    const intent = h('input', { placeholder: t('right_intent'), 'data-testid': 'ann-intent' });
    const handoff = h('select', { 'data-testid': 'ann-handoff' },
      h('option', { value: '' }, t('should_handoff') + ': ' + t('unknown')),
      h('option', { value: 'true' }, t('should_handoff') + ': ' + t('yes')),
      h('option', { value: 'false' }, t('should_handoff') + ': ' + t('no')));
    const form = h('form', { class: 'row', hidden: true, onsubmit: async (e) => {
      e.preventDefault();
      const body = { turn_id: x.turn_id, annotator: state.who.name.slice(0, 128) };
      if (faq.value.trim()) body.faq_id = faq.value.trim();
      if (intent.value.trim()) body.intent = intent.value.trim();
      if (handoff.value) body.should_handoff = handoff.value === 'true';
      try { await api('POST', '/v1/annotations', body); toast(t('annotation_saved')); form.hidden = true; } catch (err) { failed(err); }
    } }, faq, intent, handoff, h('button', { type: 'submit', 'data-testid': 'ann-save' }, t('save')));
    return h('div', {}, h('button', { type: 'button', class: 'link', 'data-testid': 'ann-open', onclick: () => { form.hidden = !form.hidden; } }, t('annotate')), form);
  }
  await load();
  if (openId) await open(openId);
}

// ---- knowledge gaps --------------------------------------------------------------------------

async function gaps(main) {
  let range = '7d';
  const list = h('div', { 'data-testid': 'gaps' });
  main.append(h('div', { class: 'row' }, h('h1', { class: 'grow' }, t('gaps')),
    rangePicker(range, (v) => { range = v; load().catch(failed); })), list);
  let win = {};
  async function load() {
    // The same window for listing and drafting, so that a cluster's id means the same cluster.
    const to = Math.floor(now() / 1000);
    win = { from: windowOf(range).from || to - 86400, to };
    const r = await api('GET', '/v1/stats/unanswered' + qs({ ...win, limit: 50 }));
    list.replaceChildren(h('p', { class: 'muted' }, `${r.questions} ${t('questions_n')}`),
      ...(r.clusters.length ? r.clusters.map(card) : [h('p', { class: 'muted' }, t('no_gaps'))]));
  }
  function card(c) {
    const result = h('div', {});
    return h('div', { class: 'card cluster', 'data-testid': 'gap' },
      h('h3', {}, `${c.representative} `, h('span', { class: 'badge' }, '× ' + c.count)),
      h('div', { class: 'muted' }, t('reasons') + ': ' + Object.entries(c.reasons).map(([k, v]) => `${t('r_' + k)} ${v}`).join(', ')),
      h('ul', {}, c.examples.map((x) => h('li', {}, x))),
      c.nearest ? h('div', { class: 'muted' }, `${t('nearest')}: ${c.nearest.faq_id} · ${c.nearest.question} (${num(c.nearest.score, 3)})`) : null,
      h('button', { 'data-testid': 'gap-draft', onclick: async (ev) => {
        ev.target.disabled = true;
        try {
          const e = await api('POST', `/v1/stats/unanswered/${encodeURIComponent(c.id)}/draft` + qs(win));
          result.replaceChildren(t('drafted') + ' ', h('a', { href: '#/kb/' + encodeURIComponent(e.id), 'data-testid': 'gap-drafted' }, e.id));
        } catch (err) {
          if (err.status === 409) {
            const id = 'draft-' + c.id;
            result.replaceChildren(t('draft_exists') + ' ', h('a', { href: '#/kb/' + encodeURIComponent(id) }, id));
          } else { ev.target.disabled = false; failed(err); }
        }
      } }, t('draft')), result);
  }
  await load();
}

// ---- hand-offs -------------------------------------------------------------------------------

function countdown(due, done) {
  if (done) return done > due ? h('span', { class: 'clock bad' }, `✓ ${t('overdue')}`) : h('span', { class: 'muted' }, '✓');
  const left = due - now();
  const abs = Math.abs(left);
  const s = Math.floor(abs / 1000);
  const text = s >= 3600 ? `${Math.floor(s / 3600)}h ${Math.floor((s % 3600) / 60)}m` : `${Math.floor(s / 60)}m ${s % 60}s`;
  return h('span', { class: 'clock ' + (left < 0 ? 'bad' : left < 60000 ? 'warn' : ''), 'data-due': due },
    left < 0 ? `${t('overdue')} ${text}` : `${text} ${t('left')}`);
}

async function handoffs(main) {
  const filter = h('select', { 'data-testid': 'ho-state' },
    ['', 'waiting', 'accepted', 'resolved'].map((s) => h('option', { value: s }, s ? t(s === 'resolved' ? 'resolved_s' : s === 'waiting' ? 'waiting_s' : s) : t('all'))));
  const list = h('div', {});
  const side = h('div', {}, h('p', { class: 'muted' }, t('pick_ticket')));
  filter.addEventListener('change', () => load().catch(failed));
  main.append(h('div', { class: 'row' }, h('h1', { class: 'grow' }, t('handoffs')), filter), h('div', { class: 'split' }, list, side));
  let selected = null;
  async function load() {
    const r = await api('GET', '/v1/handoffs' + qs({ state: filter.value, limit: 200 }));
    list.replaceChildren(r.handoffs.length ? table([
      [t('state'), (k) => h('span', { class: 'badge ' + (k.state === 'resolved' ? 'good' : k.pickup_breached || k.resolve_breached ? 'bad' : 'warn') },
        t(k.state === 'resolved' ? 'resolved_s' : k.state === 'waiting' ? 'waiting_s' : 'accepted'))],
      [t('priority'), (k) => [k.priority, k.complaint ? h('span', { class: 'badge bad' }, t('complaint')) : null]],
      [t('summary'), (k) => k.summary],
      [t('pickup_due'), (k) => countdown(k.pickup_due_ms, k.accepted_ms)],
      [t('resolve_due'), (k) => countdown(k.resolve_due_ms, k.resolved_ms)],
      [t('agent'), (k) => k.agent || ''],
    ], r.handoffs, (k) => open(k)) : h('p', { class: 'muted' }, t('no_tickets')));
    if (selected) {
      const again = r.handoffs.find((k) => k.id === selected.id);
      if (again) open(again, true).catch(failed);
    }
  }
  async function open(k, quiet) {
    selected = k;
    const agent = state.who.name.slice(0, 128);
    const actions = h('div', { class: 'row' },
      k.state === 'waiting' ? h('button', { 'data-testid': 'ho-accept', onclick: async () => {
        try { await api('POST', `/v1/handoffs/${encodeURIComponent(k.id)}/accept`, { agent }); } catch (e) { failed(e); }
        await load().catch(failed);
      } }, t('accept')) : null,
      k.state === 'accepted' ? h('button', { class: 'secondary', 'data-testid': 'ho-resolve', onclick: async () => {
        const resolution = prompt(t('resolution'));
        if (resolution === null) return;
        try {
          await api('POST', `/v1/handoffs/${encodeURIComponent(k.id)}/resolve`, { agent, resolution: resolution.trim() || undefined, release: true });
        } catch (e) { failed(e); }
        await load().catch(failed);
      } }, t('resolve')) : null);
    const conv = h('div', {});
    const assist = h('div', { 'data-testid': 'assist' });
    side.replaceChildren(h('div', { class: 'card' },
      h('h2', {}, `${t('ticket')} `, h('span', { class: 'mono' }, k.id)),
      h('p', {}, `${t('reason')}: ${k.reason} · ${t('route')}: ${k.target}${k.intent ? ' · ' + t('intent') + ': ' + k.intent : ''}`),
      h('p', {}, k.summary), k.resolution ? h('p', { class: 'muted' }, `${t('resolution')}: ${k.resolution}`) : null, actions, h('h2', {}, t('transcript')), conv, h('h2', {}, t('assist')), assist));
    let turns = [];
    try {
      turns = (await api('GET', '/v1/conversations/' + encodeURIComponent(k.session_id))).turns;
      conv.replaceChildren(...transcript(turns));
    } catch (e) { if (e.status !== 404) throw e; }
    let r;
    try {
      r = await api('POST', '/v1/assist', { session_id: k.session_id, top_k: 3 });
    } catch (e) {
      const lines = turns.map((x) => ({ role: 'customer', text: x.text })).slice(-20);
      if (!lines.length) { assist.replaceChildren(h('p', { class: 'muted' }, t('none'))); return; }
      r = await api('POST', '/v1/assist', { transcript: lines, top_k: 3 });
    }
    assist.replaceChildren(h('p', { class: 'muted' }, r.question),
      ...r.suggestions.map((s) => h('div', { class: 'turn' }, h('div', {}, s.answer),
        h('div', { class: 'meta' }, `${s.faq_id} · ${s.question} · ${num(s.score, 3)} `,
          h('button', { class: 'link', onclick: () => navigator.clipboard && navigator.clipboard.writeText(s.answer) }, t('copy'))))));
    if (!quiet) side.scrollIntoView({ block: 'nearest' });
  }
  await load();
  state.timer = setInterval(() => load().catch(failed), 15000);
  state.tick = setInterval(() => document.querySelectorAll('.clock[data-due]').forEach((el) => {
    el.replaceWith(countdown(Number(el.dataset.due)));
  }), 1000);
}

// ---- models ----------------------------------------------------------------------------------

async function models(main) {
  const enc = h('div', { class: 'card' });
  const intents = h('div', { class: 'card' });
  main.append(h('h1', {}, t('models')), enc, intents);
  async function load() {
    const [m, all] = await Promise.all([api('GET', '/v1/model'), api('GET', '/v1/models').catch(() => null)]);
    const a = m.activation;
    const ref = (r) => (r ? r.version || r.path : t('none'));
    enc.replaceChildren(...[h('h2', {}, t('serving_encoder')),
      h('p', { 'data-testid': 'model-name' }, h('b', {}, ref(m.model)),
        ` · ${t('dim')} ${m.dim} · ${t('pooling')} ${m.pooling} · ${t('max_tokens')} ${m.max_tokens}`),
      h('p', { class: 'muted' }, h('code', { 'data-path': '' }, m.model.path)),
      h('h2', {}, t('activation')),
      a ? h('div', {}, h('p', {}, `${t('activated_at')}: ${when(Date.parse(a.activated_at))}${a.forced ? ' · ' + t('forced') : ''}`),
        h('p', {}, `${t('previous')}: ${ref(a.previous)}`),
        h('details', {}, h('summary', {}, t('gate')), h('pre', { class: 'mono' }, JSON.stringify(a.gate, null, 2))))
        : h('p', { class: 'muted' }, t('none')),
      h('div', { class: 'row' }, h('button', { class: 'secondary', 'data-testid': 'model-reload', onclick: async () => {
        try { await api('POST', '/v1/model/reload'); toast(t('reload_state') + ': running'); poll(); } catch (e) { failed(e); }
      } }, t('reload')), h('span', { class: 'muted', 'data-testid': 'reload-state' },
        `${t('reload_state')}: ${m.reload.state}${m.reload.finished_at ? ' · ' + when(Date.parse(m.reload.finished_at)) : ''}`),
        m.reload.candidate ? h('code', { class: 'muted', 'data-path': '' }, m.reload.candidate) : null),
      m.reload.error ? h('p', { class: 'error', 'data-testid': 'reload-error' }, m.reload.error) : null,
      m.reload.gate ? gateTable(m.reload.gate) : null,
      activateForm(all ? all.models.map((x) => x.slot) : ['embedding/default'])].filter(Boolean));
    intents.replaceChildren(h('h2', {}, t('all_models')), all ? table([
      [t('slot'), (x) => h('code', {}, x.slot)], [t('version'), (x) => x.version],
      [t('source'), (x) => t('src_' + x.source)],
      [t('activated_at'), (x) => (x.activation ? [when(Date.parse(x.activation.activated_at)),
        x.activation.forced ? h('span', { class: 'badge bad' }, t('forced')) : null,
        x.activation.action === 'rollback' ? h('span', { class: 'badge' }, t('rolled_back')) : null] : '—')],
      [t('history'), (x) => x.history],
      ['', (x) => (x.activation ? h('button', { class: 'secondary', 'data-testid': 'rollback-' + x.slot, onclick: async () => {
        if (!confirm(t('rollback_confirm'))) return;
        try {
          const [kind, name] = x.slot.split('/');
          const r = await api('POST', `/v1/models/${kind}/${name}/rollback`);
          toast(`${t('rolled_back')}: ${r.model ? r.model.version : ''}`);
          if (kind === 'embedding') poll(); else await load();
        } catch (e) { failed(e); }
      } }, t('rollback')) : null)],
    ], all.models) : h('p', { class: 'muted' }, t('none')));
    intents.dataset.testid = 'all-models';
  }
  function gateTable(g) {
    return table([[t('check'), (c) => c.name], [t('serving'), (c) => num(c.serving, 4)], [t('candidate'), (c) => num(c.candidate, 4)],
      ['Δ', (c) => (c.change >= 0 ? '+' : '') + num(c.change, 4)],
      [t('state'), (c) => h('span', { class: 'badge ' + (c.passed ? 'good' : 'bad') }, c.passed ? 'ok' : 'FAILED')]], g.checks || []);
  }
  function activateForm(slots) {
    const slot = h('select', { 'data-testid': 'activate-slot' }, ...slots.map((s) => h('option', { value: s }, s)));
    const dir = h('input', { class: 'grow', placeholder: 'models/embedding/mine', 'data-testid': 'activate-path' });
    const drop = h('input', { type: 'number', step: '0.005', min: '0', max: '0.99', value: '0.01', size: 6 });
    const force = h('input', { type: 'checkbox' });
    return h('form', { class: 'card', onsubmit: async (e) => {
      e.preventDefault();
      const body = { path: dir.value.trim(), max_drop: Number(drop.value), force: force.checked };
      const [kind, name] = slot.value.split('/');
      try {
        if (kind === 'embedding') { await api('POST', '/v1/model/activate', body); toast(t('activating')); poll(); return; }
        toast(t('activating'));
        const r = await api('POST', `/v1/models/${kind}/${name}/activate`, body);
        toast(`${t('activated')}: ${r.model.version}`);
        await load();
        if (r.gate) enc.append(gateTable(r.gate));
      } catch (err) { failed(err); }
    } }, h('h2', {}, t('activate_hint')), h('label', {}, t('slot'), slot), h('label', {}, t('model_dir'), dir),
    h('div', { class: 'row' }, h('label', { class: 'inline' }, t('max_drop'), drop), h('label', { class: 'inline' }, force, t('force')),
      h('button', { type: 'submit', 'data-testid': 'activate' }, t('activate'))));
  }
  function poll() {
    clearInterval(state.timer);
    state.timer = setInterval(async () => {
      try {
        await load();
        const m = await api('GET', '/v1/model');
        if (m.reload.state !== 'running') { clearInterval(state.timer); state.timer = null; await load(); }
      } catch (e) { clearInterval(state.timer); failed(e); }
    }, 1500);
  }
  await load();
  if ((await api('GET', '/v1/model')).reload.state === 'running') poll();
}

document.addEventListener('DOMContentLoaded', () => start().catch(failed));
