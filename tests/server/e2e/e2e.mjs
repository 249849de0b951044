// velocity serve end to end with the official `openai` npm client: two models behind one server
// (tiny synth models: random weights, so the text is noise, but greedy decoding is exact and
// deterministic, which is what the checks use).
//
//   node e2e.mjs <velocity binary> <work dir>
//
// Checks: chat and completions, streaming and not, usage and timings, logprobs and echo, /infill, stop sequences, seed
// determinism, unknown model (404), bad key (401); 32 concurrent streaming requests over the two
// models equal the same requests run one at a time; a client that disconnects mid-stream frees
// its slot within a second (seen in /metrics); SIGTERM lets a running request finish, refuses new
// ones, and the process exits 0.
import { spawn, execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import assert from 'node:assert/strict';
import OpenAI from 'openai';

const [binary, work] = process.argv.slice(2);
fs.mkdirSync(work, { recursive: true });
const KEY = 'sk-velocity-test';

function synth(arch, type, file) {
  const out = path.join(work, file);
  if (!fs.existsSync(out)) execFileSync(binary, ['synth', '--arch', arch, '--preset', 'tiny', '--type', type, '-o', out, '--seed', '3']);
  return out;
}
const modelA = synth('llama', 'Q8_0', 'a.gguf');
const modelB = synth('qwen3', 'Q4_K_M', 'b.gguf');
const template = "{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}\\n{% endfor %}{% if add_generation_prompt %}<|assistant|>{% endif %}";
fs.writeFileSync(path.join(work, 'velocity.toml'), `
[server]
host = "127.0.0.1"
port = 0
api_keys = ["${KEY}"]
shutdown_grace_s = 20

[[model]]
name = "alpha"
path = "${modelA}"
ctx = 512
slots = 4
chat_template = "${template}"

[[model]]
name = "beta"
path = "${modelB}"
ctx = 512
slots = 4
chat_template = "${template}"
`);

function start() {
  const proc = spawn(binary, ['serve', '--config', path.join(work, 'velocity.toml'), '-t', '2'], { stdio: ['ignore', 'pipe', 'pipe'] });
  let log = '';
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('server did not start:\n' + log)), 60000);
    proc.stderr.on('data', (d) => {
      log += d;
      const m = log.match(/listening on http:\/\/127\.0\.0\.1:(\d+)/);
      if (m && (log.match(/ready/g) || []).length >= 2) {
        clearTimeout(timer);
        resolve({ proc, port: Number(m[1]), log: () => log });
      }
    });
    proc.on('exit', (code) => reject(new Error(`server exited ${code}:\n${log}`)));
  });
}

const server = await start();
const base = `http://127.0.0.1:${server.port}`;
const client = new OpenAI({ apiKey: KEY, baseURL: `${base}/v1`, maxRetries: 0 });
let failures = 0;
async function check(name, fn) {
  try {
    await fn();
    console.log(`ok   ${name}`);
  } catch (e) {
    failures++;
    console.log(`FAIL ${name}: ${e.stack || e}`);
  }
}
const greedy = { temperature: 0 };
const ask = (model, content, extra = {}) =>
  client.chat.completions.create({ model, messages: [{ role: 'user', content }], max_tokens: 16, ...greedy, ...extra });
async function streamText(model, content, extra = {}) {
  const stream = await client.chat.completions.create({ model, messages: [{ role: 'user', content }], max_tokens: 16, stream: true, ...greedy, ...extra });
  let text = '', finish = null, usage = null, chunks = 0;
  for await (const chunk of stream) {
    chunks++;
    if (chunk.usage) usage = chunk.usage;
    for (const c of chunk.choices) {
      if (c.delta?.content) text += c.delta.content;
      if (c.finish_reason) finish = c.finish_reason;
    }
  }
  return { text, finish, usage, chunks };
}

await check('models list', async () => {
  const models = [];
  for await (const m of client.models.list()) models.push(m.id);
  assert.deepEqual(models.sort(), ['alpha', 'beta']);
});

await check('chat completion: shape, usage, timings', async () => {
  const r = await ask('alpha', 'Hello there');
  assert.equal(r.object, 'chat.completion');
  assert.equal(r.model, 'alpha');
  assert.equal(r.choices.length, 1);
  assert.equal(r.choices[0].message.role, 'assistant');
  assert.equal(typeof r.choices[0].message.content, 'string');
  assert.ok(['stop', 'length'].includes(r.choices[0].finish_reason));
  assert.ok(r.usage.prompt_tokens > 0 && r.usage.completion_tokens > 0);
  assert.equal(r.usage.total_tokens, r.usage.prompt_tokens + r.usage.completion_tokens);
  assert.ok(r.timings && r.timings.predicted_n === r.usage.completion_tokens, JSON.stringify(r.timings));
});

await check('completions endpoint', async () => {
  const r = await client.completions.create({ model: 'beta', prompt: 'Once upon a time', max_tokens: 8, temperature: 0 });
  assert.equal(r.object, 'text_completion');
  assert.equal(typeof r.choices[0].text, 'string');
  assert.ok(r.usage.completion_tokens >= 1 && r.usage.completion_tokens <= 8);
});

await check('suffix: fill in the middle where the vocabulary has FIM markers, else a 400 naming it', async () => {
  // beta's (Qwen-style) vocabulary has <|fim_prefix|>, <|fim_suffix|>, <|fim_middle|>: the prompt
  // is the two texts' tokens and the three markers.
  const prefix = 'def f(x):', suffix = '    return y';
  const r = await client.completions.create({ model: 'beta', prompt: prefix, suffix, max_tokens: 4, temperature: 0 });
  assert.equal(r.object, 'text_completion');
  const count = async (content) => {
    const t = await fetch(`${base}/tokenize`, {
      method: 'POST', headers: { 'Content-Type': 'application/json', Authorization: `Bearer ${KEY}` },
      body: JSON.stringify({ model: 'beta', content, add_special: false, parse_special: false }),
    });
    assert.equal(t.status, 200);
    return (await t.json()).tokens.length;
  };
  assert.equal(r.usage.prompt_tokens, (await count(prefix)) + (await count(suffix)) + 3);
  // alpha's (Llama 3-style) vocabulary has none.
  await assert.rejects(
    client.completions.create({ model: 'alpha', prompt: prefix, suffix, max_tokens: 8 }),
    (e) => e instanceof OpenAI.BadRequestError && e.status === 400 && e.param === 'suffix' &&
      /fill-in-the-middle/.test(e.message));
  // An empty suffix (what some clients send by default) is a plain completion.
  const plain = await client.completions.create({ model: 'alpha', prompt: 'Once', suffix: '', max_tokens: 2, temperature: 0 });
  assert.equal(plain.object, 'text_completion');
});

await check('logprobs: chat and completions, streamed and not; one entry per token of the text', async () => {
  const entryOk = (e, top) => {
    assert.equal(typeof e.token, 'string');
    assert.ok(e.logprob <= 0 && Number.isFinite(e.logprob), JSON.stringify(e));
    assert.ok(Array.isArray(e.bytes));
    assert.equal(e.top_logprobs.length, top);
    for (let i = 1; i < top; i++) assert.ok(e.top_logprobs[i].logprob <= e.top_logprobs[i - 1].logprob);
    // greedy: the token is the most likely one
    assert.equal(e.top_logprobs[0].token, e.token);
    assert.equal(e.top_logprobs[0].logprob, e.logprob);
  };
  const r = await ask('alpha', 'Hello there', { logprobs: true, top_logprobs: 3 });
  const content = r.choices[0].logprobs.content;
  assert.ok(Array.isArray(content) && content.length > 0, JSON.stringify(r.choices[0]));
  for (const e of content) entryOk(e, 3);
  const text = r.choices[0].message.content;
  // The entries' bytes make the text, but for control tokens (their pieces are not in the text).
  const control = (t) => /^<\|[^|]*\|>$/.test(t);
  const joined = Buffer.concat(content.filter((e) => !control(e.token)).map((e) => Buffer.from(e.bytes)));
  if (!text.includes('\ufffd')) assert.equal(joined.toString('utf8'), text);
  if (r.choices[0].finish_reason === 'length') assert.equal(content.length, r.usage.completion_tokens);
  // streamed: the chunks' entries, in order, are the same
  const stream = await client.chat.completions.create({ model: 'alpha', messages: [{ role: 'user', content: 'Hello there' }],
    max_tokens: 16, stream: true, logprobs: true, top_logprobs: 3, ...greedy });
  const streamed = [];
  for await (const chunk of stream)
    for (const c of chunk.choices) if (c.logprobs?.content) streamed.push(...c.logprobs.content);
  assert.deepEqual(streamed, content);
  // not asked: null
  assert.equal((await ask('alpha', 'Hello there')).choices[0].logprobs, null);
  // completions: the legacy shape
  const c = await client.completions.create({ model: 'beta', prompt: 'Once upon a time', max_tokens: 8, temperature: 0, logprobs: 2 });
  const lp = c.choices[0].logprobs;
  const n = lp.tokens.length;
  assert.ok(n > 0);
  assert.equal(lp.token_logprobs.length, n);
  assert.equal(lp.top_logprobs.length, n);
  assert.equal(lp.text_offset.length, n);
  assert.equal(lp.text_offset[0], 0);
  for (let i = 0; i < n; i++) {
    assert.ok(lp.token_logprobs[i] <= 0);
    const top = Object.entries(lp.top_logprobs[i]);
    assert.ok(top.length >= 1 && top.length <= 2);
    assert.equal(Math.max(...top.map(([, v]) => v)), lp.token_logprobs[i]);  // greedy
    // byte offsets: a token that is part of a character shows as U+FFFD, so only the order is checked
    if (i > 0) assert.ok(lp.text_offset[i] > lp.text_offset[i - 1]);
  }
  if (!c.choices[0].text.includes('\ufffd')) assert.equal(lp.tokens.filter((t) => !control(t)).join(''), c.choices[0].text);
  // out of range: a 400 naming the field
  await assert.rejects(ask('alpha', 'x', { logprobs: true, top_logprobs: 21 }),
    (e) => e instanceof OpenAI.BadRequestError && e.param === 'top_logprobs');
});

await check('echo: the prompt scored (max_tokens 0, lm-eval\'s loglikelihood); its generated part as when generated, where the text tokenizes back the same', async () => {
  const prompt = 'Once upon a time';
  const gen = await client.completions.create({ model: 'beta', prompt, max_tokens: 4, temperature: 0, logprobs: 1 });
  const full = prompt + gen.choices[0].text;
  const r = await client.completions.create({ model: 'beta', prompt: full, max_tokens: 0, echo: true, logprobs: 1, temperature: 0 });
  assert.equal(r.choices[0].text, full);
  const lp = r.choices[0].logprobs;
  assert.equal(lp.tokens.length, r.usage.prompt_tokens);
  assert.equal(r.usage.completion_tokens, 0);
  assert.equal(lp.token_logprobs[0], null);
  assert.equal(lp.top_logprobs[0], null);
  for (let i = 1; i < lp.tokens.length; i++) assert.ok(lp.token_logprobs[i] <= 0);
  // The generated tokens, scored as part of the prompt, have the values they had when generated
  // (when the text tokenizes back into the same tokens).
  const g = gen.choices[0].logprobs, n = g.tokens.length;
  if (JSON.stringify(lp.tokens.slice(-n)) === JSON.stringify(g.tokens))
    for (let i = 0; i < n; i++) assert.ok(Math.abs(lp.token_logprobs[lp.tokens.length - n + i] - g.token_logprobs[i]) < 1e-3);
  // echo with generation, no logprobs: the text starts with the prompt
  const e = await client.completions.create({ model: 'alpha', prompt, max_tokens: 3, echo: true, temperature: 0 });
  assert.ok(e.choices[0].text.startsWith(prompt));
  assert.equal(e.choices[0].logprobs, null);
});

await check('/infill (llama.cpp\'s editor endpoint): native shape, streamed the same; a 400 for a model without FIM markers', async () => {
  const post = (body) => fetch(`${base}/infill`, { method: 'POST', headers: { 'Content-Type': 'application/json', Authorization: `Bearer ${KEY}` }, body: JSON.stringify(body) });
  const body = { model: 'beta', input_prefix: 'def add(a, b):\n    ', input_suffix: '\n\nprint(add(1, 2))\n', prompt: 'return',
    input_extra: [{ filename: 'util.py', text: 'def sub(a, b):\n    return a - b\n' }], n_predict: 6, temperature: 0 };
  const r = await post(body);
  assert.equal(r.status, 200);
  const j = await r.json();
  assert.equal(typeof j.content, 'string');
  assert.equal(j.stop, true);
  assert.ok(j.tokens_predicted >= 1 && j.tokens_predicted <= 6, JSON.stringify(j));
  assert.ok(j.tokens_evaluated > 0);
  assert.ok(['eos', 'limit'].includes(j.stop_type));
  assert.ok(j.timings && j.timings.predicted_n === j.tokens_predicted);
  // The prompt is <pre> prefix cursor <suf> suffix <mid>: at a context of 512 there is no room for
  // the extra file (llama.cpp keeps n_ctx - 2048 - 2 n_predict tokens of it, so none).
  const count = async (content) => (await (await fetch(`${base}/tokenize`, { method: 'POST',
    headers: { 'Content-Type': 'application/json', Authorization: `Bearer ${KEY}` }, body: JSON.stringify({ model: 'beta', content }) })).json()).tokens.length;
  assert.equal(j.tokens_evaluated, (await count(body.input_prefix)) + (await count(body.prompt)) + (await count(body.input_suffix)) + 3);
  // streamed: data events of {content, stop}; the last has stop true; no [DONE]
  const s = await post({ ...body, stream: true });
  const events = (await s.text()).split('\n\n').filter((e) => e.startsWith('data: ')).map((e) => e.slice(6));
  assert.ok(!events.includes('[DONE]'));
  const objs = events.map((e) => JSON.parse(e));
  assert.equal(objs.at(-1).stop, true);
  assert.equal(objs.slice(0, -1).map((o) => o.content).join(''), j.content);
  // a model without FIM markers
  const bad = await post({ ...body, model: 'alpha' });
  assert.equal(bad.status, 400);
  assert.equal((await bad.json()).error.param, 'input_prefix');
});

await check('streaming equals non-streaming (greedy), usage chunk when asked', async () => {
  const whole = await ask('alpha', 'Stream me');
  const s = await streamText('alpha', 'Stream me', { stream_options: { include_usage: true } });
  assert.equal(s.text, whole.choices[0].message.content);
  assert.equal(s.finish, whole.choices[0].finish_reason);
  assert.ok(s.usage && s.usage.completion_tokens === whole.usage.completion_tokens, JSON.stringify(s.usage));
  const noUsage = await streamText('alpha', 'Stream me');
  assert.equal(noUsage.usage, null);
});

await check('stop sequence ends the text before it', async () => {
  const whole = await ask('beta', 'Say something long', { max_tokens: 24 });
  const text = whole.choices[0].message.content;
  const chars = [...text];
  assert.ok(chars.length >= 4, `too short: ${JSON.stringify(text)}`);
  const stop = chars.slice(2, 4).join('');
  const r = await ask('beta', 'Say something long', { max_tokens: 24, stop: [stop] });
  assert.equal(r.choices[0].message.content, text.slice(0, text.indexOf(stop)));
  assert.equal(r.choices[0].finish_reason, 'stop');
});

await check('seed determinism', async () => {
  const opts = { temperature: 1.0, top_p: 1, max_tokens: 24 };
  const a = await ask('alpha', 'Random', { ...opts, seed: 42 });
  const b = await ask('alpha', 'Random', { ...opts, seed: 42 });
  const c = await ask('alpha', 'Random', { ...opts, seed: 43 });
  assert.equal(a.choices[0].message.content, b.choices[0].message.content);
  assert.notEqual(a.choices[0].message.content, c.choices[0].message.content);
});

await check('unknown model is 404, bad key is 401', async () => {
  await assert.rejects(ask('gamma', 'x'), (e) => e instanceof OpenAI.NotFoundError && e.status === 404);
  const bad = new OpenAI({ apiKey: 'sk-wrong', baseURL: `${base}/v1`, maxRetries: 0 });
  await assert.rejects(bad.chat.completions.create({ model: 'alpha', messages: [{ role: 'user', content: 'x' }] }),
    (e) => e instanceof OpenAI.AuthenticationError && e.status === 401);
});

await check('32 concurrent streams over 2 models equal one-at-a-time greedy', async () => {
  const jobs = [];
  for (let i = 0; i < 32; i++) jobs.push({ model: i % 2 ? 'beta' : 'alpha', content: `Request number ${i}: ${'word '.repeat(i % 7)}` });
  const sequential = [];
  for (const j of jobs) sequential.push(await streamText(j.model, j.content));
  const concurrent = await Promise.all(jobs.map((j) => streamText(j.model, j.content)));
  for (let i = 0; i < jobs.length; i++) {
    assert.equal(concurrent[i].text, sequential[i].text, `request ${i}`);
    assert.equal(concurrent[i].finish, sequential[i].finish, `request ${i}`);
  }
});

async function metric(name, model) {
  const body = await (await fetch(`${base}/metrics`, { headers: { Authorization: `Bearer ${KEY}` } })).text();
  const line = body.split('\n').find((l) => l.startsWith(`${name}{`) && l.includes(`model="${model}"`));
  assert.ok(line, `${name} for ${model} not in /metrics`);
  return Number(line.split(' ').pop());
}

await check('a client that disconnects mid-stream frees its slot within a second', async () => {
  const controller = new AbortController();
  const stream = await client.chat.completions.create(
    { model: 'alpha', messages: [{ role: 'user', content: 'go on forever' }], max_tokens: 400, stream: true, ...greedy },
    { signal: controller.signal });
  let n = 0;
  try {
    for await (const chunk of stream) {
      if (++n === 3) {
        assert.equal(await metric('velocity_busy_slots', 'alpha'), 1);
        controller.abort();
      }
    }
  } catch (e) {
    if (!(e instanceof OpenAI.APIUserAbortError) && e.name !== 'AbortError') throw e;
  }
  const t0 = Date.now();
  while ((await metric('velocity_busy_slots', 'alpha')) !== 0) {
    assert.ok(Date.now() - t0 < 1000, 'slot still busy after 1 s');
    await new Promise((r) => setTimeout(r, 20));
  }
});

await check('SIGTERM: the running request finishes, new ones are refused, exit 0', async () => {
  const running = streamText('beta', 'last words', { max_tokens: 48 });
  await new Promise((r) => setTimeout(r, 50));
  const exited = new Promise((resolve) => server.proc.on('exit', (code) => resolve(code)));
  server.proc.kill('SIGTERM');
  await new Promise((r) => setTimeout(r, 100));
  const refused = await fetch(`${base}/v1/chat/completions`, {
    method: 'POST', headers: { 'Content-Type': 'application/json', Authorization: `Bearer ${KEY}` },
    body: JSON.stringify({ model: 'beta', messages: [{ role: 'user', content: 'x' }] }),
  }).then((r) => r.status, () => 'connection refused');
  assert.ok(refused === 503 || refused === 'connection refused', `new request got ${refused}`);
  const r = await running;
  assert.ok(['stop', 'length'].includes(r.finish), `finish ${r.finish}`);
  assert.equal(await exited, 0);
});

if (server.proc.exitCode === null) server.proc.kill('SIGKILL');
console.log(failures === 0 ? 'all e2e checks passed' : `${failures} e2e check(s) failed\n--- server log ---\n${server.log()}`);
process.exit(failures === 0 ? 0 : 1);
