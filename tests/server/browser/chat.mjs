// velocity's built-in chat page (GET /, web/chat.html) in a real headless Chromium: puppeteer-core
// drives Debian's chromium against `velocity serve` on the bundled demo model (models/demo).
//
//   node chat.mjs <velocity binary> <repository root> <work dir>
//
// Keyless server, two names for the demo model ("demo": greedy, 24 tokens; "demo-long": up to a
// context of 4096, past the 512 it was trained for, so that an answer runs for seconds (~4,000
// tokens, ~15 s on one core) and is surely still running when Stop is clicked):
//   - the picker is filled from /v1/models; a message streams an answer in, equal to the
//     non-streamed answer to the same request, and Stop goes back to idle;
//   - a follow-up sends the whole conversation;
//   - Stop aborts a running answer: the page keeps the partial answer marked "(stopped)" and the
//     server sees the client go;
//   - a prompt over the context shows the server's error message and gives the text back.
// A stubbed answer with reasoning_content deltas: they fill a folded <details> above the answer.
// A server with api_keys: the page asks for a key and shows the server's 401 message; once the
// key is saved it is kept in localStorage and sent as Authorization: Bearer.
// Everywhere: the page fetches nothing but its own origin, raises no exception, and the console has
// no error but the failed loads (400, 401) that the error checks provoke on purpose.
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import assert from 'node:assert/strict';
import puppeteer from 'puppeteer-core';

const [binary, root, work] = process.argv.slice(2);
const chromium = process.env.CHROMIUM || '/usr/bin/chromium';
const demo = path.join(root, 'models/demo/demo.gguf');
const KEY = 'sk-velocity-browser-test';

function writeConfig(file, keyed) {
  const model = (name, ctx, sampling) => `
[[model]]
name = "${name}"
path = "${demo}"
device = "cpu"
ctx = ${ctx}
[model.sampling]
temperature = 0
${sampling}
`;
  fs.writeFileSync(file, `[server]
host = "127.0.0.1"
port = 0
${keyed ? `api_keys = ["${KEY}"]` : ''}
${model('demo', 512, 'max_tokens = 24')}
${keyed ? '' : model('demo-long', 4096, '')}`);
}

// Starts `velocity serve --config file` (one CPU thread, the other core is Chromium's) and resolves
// once it listens and every model is ready.
function serve(file, n_models) {
  const proc = spawn(binary, ['serve', '--config', file, '-t', '1'], { stdio: ['ignore', 'ignore', 'pipe'] });
  let log = '';
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('server did not start:\n' + log)), 60000);
    proc.stderr.on('data', (d) => {
      log += d;
      const m = log.match(/listening on http:\/\/127\.0\.0\.1:(\d+)/);
      if (m && (log.match(/ready/g) || []).length >= n_models) {
        clearTimeout(timer);
        resolve({ proc, base: `http://127.0.0.1:${m[1]}`, log: () => log });
      }
    });
    proc.on('exit', (code) => reject(new Error(`server exited ${code}:\n${log}`)));
  });
}

let failures = 0;
async function check(name, fn) {
  const started = Date.now();
  try {
    await fn();
    console.log(`ok   ${name} (${Date.now() - started} ms)`);
  } catch (e) {
    failures++;
    console.log(`FAIL ${name}: ${e.stack || e}`);
  }
}

// A fresh browser context (its own localStorage) with a page that records what the checks need.
async function openPage(browser, base) {
  const context = await browser.createBrowserContext();
  const page = await context.newPage();
  const seen = { console: [], errors: [], requests: [] };
  page.on('console', (m) => seen.console.push({ type: m.type(), text: m.text() }));
  page.on('pageerror', (e) => seen.errors.push(String(e)));
  page.on('request', (r) => seen.requests.push({ url: r.url(), method: r.method(), headers: r.headers(), body: r.postData() }));
  page.setDefaultTimeout(30000);
  await page.goto(base + '/', { waitUntil: 'load' });
  return { context, page, seen };
}

const ui = {
  answers: (page) => page.$$eval('.msg.assistant .answer', (els) => els.map((e) => e.textContent)),
  lastNote: (page) => page.$$eval('.msg.assistant', (els) => els.length ? (els.at(-1).querySelector('.note') || {}).textContent || '' : ''),
  error: (page) => page.$eval('#error', (e) => (e.hidden ? '' : e.textContent)),
  state: (page) => page.evaluate(() => ({
    body: document.body.dataset.state, stop: document.getElementById('stop').disabled, send: document.getElementById('send').disabled,
  })),
};

async function send(page, text) {
  await page.$eval('#input', (e, t) => { e.value = t; }, text);
  await page.click('#send');
}

// Waits for the last answer to be non-empty and the page back to idle (Stop disabled).
async function answered(page, n_answers) {
  await page.waitForFunction((n) => {
    const answers = document.querySelectorAll('.msg.assistant .answer');
    return answers.length === n && answers[n - 1].textContent.length > 0 && document.getElementById('stop').disabled;
  }, {}, n_answers);
  return (await ui.answers(page))[n_answers - 1];
}

function chatRequests(seen) {
  return seen.requests.filter((r) => r.url.endsWith('/v1/chat/completions') && r.method === 'POST').map((r) => ({ ...r, json: JSON.parse(r.body) }));
}

// Console errors other than the failed loads in `expected` ("400", "401").
function unexpectedConsole(seen, expected = []) {
  return seen.console.filter((m) => m.type === 'error' &&
    !expected.some((status) => m.text.startsWith(`Failed to load resource: the server responded with a status of ${status}`)));
}

async function apiError(base, route, init) {
  const r = await fetch(base + route, init);
  const body = await r.json();
  assert.ok(!r.ok && body.error && body.error.message, JSON.stringify(body));
  return body.error.message;
}

fs.mkdirSync(work, { recursive: true });
const keylessConfig = path.join(work, 'keyless.toml');
const keyedConfig = path.join(work, 'keyed.toml');
writeConfig(keylessConfig, false);
writeConfig(keyedConfig, true);

const launched = Date.now();
const browser = await puppeteer.launch({ executablePath: chromium, headless: true, args: ['--no-sandbox'] });
console.log(`chromium ${await browser.version()} started in ${Date.now() - launched} ms`);
const servers = [];
try {
  const keyless = await serve(keylessConfig, 2);
  servers.push(keyless);
  const { page, seen } = await openPage(browser, keyless.base);

  await check('the page loads and fills the picker from /v1/models', async () => {
    assert.equal(await page.title(), 'velocity chat');
    await page.waitForFunction(() => document.getElementById('model').options.length === 2);
    assert.deepEqual(await page.$$eval('#model option', (os) => os.map((o) => o.value)), ['demo', 'demo-long']);
    assert.deepEqual(await ui.state(page), { body: 'idle', stop: true, send: false });
  });

  const question = 'Who was Moses?';
  let first = '';
  await check('a message streams an answer in; Stop goes back to idle', async () => {
    await send(page, question);
    first = await answered(page, 1);
    assert.ok(first.length > 0);
    assert.deepEqual(await ui.state(page), { body: 'idle', stop: true, send: false });
    const [req] = chatRequests(seen);
    assert.equal(req.json.stream, true);
    assert.equal(req.json.model, 'demo');
    assert.deepEqual(req.json.messages, [{ role: 'user', content: question }]);
    // The streamed deltas add up to the answer the server gives without streaming (greedy).
    const plain = await (await fetch(keyless.base + '/v1/chat/completions', {
      method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ model: 'demo', messages: req.json.messages }),
    })).json();
    assert.equal(first, plain.choices[0].message.content);
    assert.equal(await page.$eval('.msg.assistant .reasoning', (e) => e.hidden), true);  // the demo model does not reason
  });

  await check('a follow-up sends the whole conversation', async () => {
    await send(page, 'And then?');
    const second = await answered(page, 2);
    assert.ok(second.length > 0);
    const reqs = chatRequests(seen);
    assert.equal(reqs.length, 2);
    assert.deepEqual(reqs[1].json.messages, [
      { role: 'user', content: question }, { role: 'assistant', content: first }, { role: 'user', content: 'And then?' },
    ]);
  });

  await check('Stop aborts a running answer', async () => {
    await page.select('#model', 'demo-long');
    await page.click('#new-chat');
    assert.deepEqual(await ui.answers(page), []);
    await send(page, 'Tell me of the kings of Israel.');
    await page.waitForFunction(() => {
      const a = document.querySelector('.msg.assistant .answer');
      return a && a.textContent.length > 0;
    });
    await page.click('#stop');
    await page.waitForFunction(() => document.getElementById('stop').disabled);
    assert.deepEqual(await ui.state(page), { body: 'idle', stop: true, send: false });
    assert.equal(await ui.lastNote(page), '(stopped)');
    assert.ok((await ui.answers(page))[0].length > 0);
    assert.equal(await ui.error(page), '');
    const deadline = Date.now() + 5000;
    while (!/model 'demo-long': client gone/.test(keyless.log()) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    assert.match(keyless.log(), /model 'demo-long': client gone/);
  });

  await check("a server error shows the server's message and gives the text back", async () => {
    await page.select('#model', 'demo');
    await page.click('#new-chat');
    const long = 'And it came to pass '.repeat(150);
    const expected = await apiError(keyless.base, '/v1/chat/completions', {
      method: 'POST', headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ model: 'demo', messages: [{ role: 'user', content: long.trim() }], stream: true }),
    });
    await send(page, long);
    await page.waitForFunction(() => !document.getElementById('error').hidden && document.getElementById('stop').disabled);
    assert.equal(await ui.error(page), expected);
    assert.equal(await page.$eval('#input', (e) => e.value), long.trim());
    assert.equal(await page.$$eval('.msg', (els) => els.length), 0);
  });

  await check('nothing but the own origin is fetched; no exception; no console error', async () => {
    const foreign = seen.requests.filter((r) => !r.url.startsWith(keyless.base + '/'));
    assert.deepEqual(foreign, []);
    assert.deepEqual(seen.errors, []);
    assert.deepEqual(unexpectedConsole(seen, ['400']), []);
    assert.equal(seen.console.filter((m) => m.type === 'error').length, 1, JSON.stringify(seen.console));  // the 400 above
  });

  // The demo model does not reason: a stubbed answer (the server's SSE shape) has reasoning deltas.
  const r = await openPage(browser, keyless.base);
  await check('reasoning_content streams into a folded <details> above the answer (stubbed answer)', async () => {
    await r.page.setRequestInterception(true);
    const chunk = (delta) => `data: ${JSON.stringify({ id: 'chatcmpl-stub', object: 'chat.completion.chunk', model: 'demo',
      choices: [{ index: 0, delta, logprobs: null, finish_reason: null }] })}\n\n`;
    r.page.on('request', (req) => {
      if (!req.url().endsWith('/v1/chat/completions')) return req.continue();
      req.respond({ status: 200, contentType: 'text/event-stream', body: chunk({ role: 'assistant', content: '' }) +
        chunk({ reasoning_content: 'The user asks. ' }) + ': keep-alive\n\n' + chunk({ reasoning_content: 'Answer briefly.' }) +
        chunk({ content: 'Moses led ' }) + chunk({ content: 'Israel.' }) + 'data: [DONE]\n\n' });
    });
    await r.page.waitForFunction(() => document.getElementById('model').options.length === 2);
    await send(r.page, question);
    assert.equal(await answered(r.page, 1), 'Moses led Israel.');
    const reasoning = await r.page.$eval('.msg.assistant .reasoning', (e) => ({
      hidden: e.hidden, open: e.open, text: e.querySelector('pre').textContent,
      above: !!(e.compareDocumentPosition(e.parentNode.querySelector('.answer')) & Node.DOCUMENT_POSITION_FOLLOWING),
    }));
    assert.deepEqual(reasoning, { hidden: false, open: false, text: 'The user asks. Answer briefly.', above: true });
    assert.deepEqual(r.seen.errors, []);
    assert.deepEqual(unexpectedConsole(r.seen), []);
  });

  const keyed = await serve(keyedConfig, 1);
  servers.push(keyed);
  const k = await openPage(browser, keyed.base);
  await check('with api_keys the page asks for a key and shows the 401 message', async () => {
    const expected = await apiError(keyed.base, '/v1/models', {});
    await k.page.waitForFunction(() => !document.getElementById('key-row').hidden && !document.getElementById('error').hidden);
    assert.equal(await ui.error(k.page), expected);
    assert.equal(await k.page.$$eval('#model option', (os) => os.length), 0);
  });

  await check('the saved key is sent as Authorization: Bearer and the answer streams in', async () => {
    await k.page.type('#key', KEY);
    await k.page.click('#save-key');
    await k.page.waitForFunction(() => document.getElementById('model').options.length === 1);
    assert.equal(await ui.error(k.page), '');
    assert.equal(await k.page.$eval('#key-row', (e) => e.hidden), true);
    assert.equal(await k.page.evaluate(() => localStorage.getItem('velocity.apiKey')), KEY);
    await send(k.page, question);
    assert.equal(await answered(k.page, 1), first);  // same model, greedy, same limit
    const [req] = chatRequests(k.seen);
    assert.equal(req.headers.authorization, `Bearer ${KEY}`);
    assert.deepEqual(k.seen.errors, []);
    assert.deepEqual(unexpectedConsole(k.seen, ['401']), []);
  });
} catch (e) {
  failures++;
  console.log(`FAIL ${e.stack || e}`);
} finally {
  await browser.close();
  for (const s of servers) s.proc.kill('SIGKILL');
}
console.log(failures ? `${failures} check(s) failed` : 'all checks passed');
process.exit(failures ? 1 : 0);
