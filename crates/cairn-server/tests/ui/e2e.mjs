// End-to-end test of Cairn's web UI in headless Chromium, against a running
// `cairn serve`.
//
//   CAIRN_URL=http://127.0.0.1:18080 node e2e.mjs
//
// Environment:
//   CAIRN_URL          base URL of the server (required)
//   CAIRN_SCREENSHOTS  where screenshots go (default /tmp)
//   CAIRN_API_KEY      a key, when the server needs one
//   CHROMIUM           the browser binary (default /usr/bin/chromium)
//   CAIRN_ASK_TIMEOUT_MS  how long an answer may take (default 240000)
//
// The generator is a small real model, so the answer's wording is not
// asserted: only that it arrives, streams, cites, and that the citation
// leads back to the uploaded document.

import { chromium } from 'playwright-core';
import assert from 'node:assert/strict';
import { readFile, mkdir } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const FIXTURE = path.join(here, 'fixtures', 'lighthouse.md');
const FIXTURE_NAME = 'lighthouse.md';
const COLLECTION = 'e2e';
const QUESTION = 'When is the lamp lit at the Skarv Island lighthouse?';

const BASE = (process.env.CAIRN_URL || '').replace(/\/+$/, '');
const SHOTS = process.env.CAIRN_SCREENSHOTS || '/tmp';
const API_KEY = process.env.CAIRN_API_KEY || '';
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const ASK_TIMEOUT = Number(process.env.CAIRN_ASK_TIMEOUT_MS || 240_000);
const INGEST_TIMEOUT = 180_000;
const UI_TIMEOUT = 15_000;

if (!BASE) {
  console.error('e2e: set CAIRN_URL to a running `cairn serve`, e.g. CAIRN_URL=http://127.0.0.1:18080');
  process.exit(2);
}

// ------------------------------------------------------------------ helpers

const t0 = Date.now();
const secs = () => ((Date.now() - t0) / 1000).toFixed(1).padStart(6);
let currentStep = '(start)';

async function step(name, fn) {
  currentStep = name;
  const start = Date.now();
  process.stdout.write(`[${secs()}s] ${name} … `);
  const result = await fn();
  console.log(`ok (${((Date.now() - start) / 1000).toFixed(1)} s)`);
  return result;
}

async function api(method, p, body) {
  const headers = {};
  if (API_KEY) headers.Authorization = `Bearer ${API_KEY}`;
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  const res = await fetch(BASE + p, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.text();
  let json = null;
  try { json = text ? JSON.parse(text) : null; } catch { /* not JSON */ }
  return { status: res.status, json, text };
}

function fail(message) {
  throw new Error(message);
}

const screenshots = [];
async function shot(page, name) {
  const file = path.join(SHOTS, `cairn-e2e-${name}.png`);
  await page.screenshot({ path: file, fullPage: true });
  screenshots.push(file);
  return file;
}

// ---------------------------------------------------------------------- run

const fixtureText = await readFile(FIXTURE, 'utf8');
await mkdir(SHOTS, { recursive: true });

let browser;
let page;
const pageErrors = [];
const failedResponses = [];

try {
  await step(`server is up at ${BASE}`, async () => {
    let res;
    try {
      res = await api('GET', '/healthz');
    } catch (err) {
      fail(`cannot reach ${BASE}/healthz: ${err.cause?.message || err.message}`);
    }
    assert.equal(res.status, 200, `/healthz answered ${res.status}: ${res.text}`);
  });

  // A failed earlier run may have left the fixture behind: remove it through
  // the API so the upload below is a fresh one.
  await step('clean up leftovers of earlier runs', async () => {
    const res = await api('GET', `/api/collections/${COLLECTION}/documents`);
    if (res.status === 404) return;
    assert.equal(res.status, 200, `listing documents: ${res.status} ${res.text}`);
    for (const d of res.json.documents || []) {
      if (d.name === FIXTURE_NAME || d.name.endsWith(`/${FIXTURE_NAME}`)) {
        const del = await api('DELETE', `/api/collections/${COLLECTION}/documents/${d.id}`);
        assert.equal(del.status, 204, `deleting leftover document ${d.id}: ${del.status} ${del.text}`);
      }
    }
  });

  browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox'] });
  const context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
  page = await context.newPage();
  page.setDefaultTimeout(UI_TIMEOUT);
  page.on('pageerror', (err) => pageErrors.push(err.message));
  page.on('console', (msg) => {
    if (msg.type() === 'error') console.log(`\n  [browser console] ${msg.text()}`);
  });
  page.on('response', (res) => {
    if (res.status() >= 500) failedResponses.push(`${res.request().method()} ${res.url()} → ${res.status()}`);
  });
  // Nothing may load from outside the server.
  const foreign = [];
  page.on('request', (req) => {
    const url = req.url();
    if (!url.startsWith(BASE) && !url.startsWith('data:') && !url.startsWith('blob:')) foreign.push(url);
  });

  await step('open the UI', async () => {
    const res = await page.goto(`${BASE}/`);
    assert.equal(res.status(), 200, `GET / answered ${res.status()}`);
    if (API_KEY) {
      // The UI asks for a key after a 401.
      await page.locator('#api-key').waitFor({ state: 'visible' });
      await page.fill('#api-key', API_KEY);
      await page.click('#api-key-save');
    }
    await page.waitForSelector('body[data-ready="true"]');
    assert.equal(await page.title(), 'Cairn');
    assert.deepEqual(foreign, [], `the page loaded resources from elsewhere: ${foreign.join(', ')}`);
  });

  await step(`create or select the collection "${COLLECTION}"`, async () => {
    const names = await page.$$eval('#collection option', (os) => os.map((o) => o.value));
    if (names.includes(COLLECTION)) {
      await page.selectOption('#collection', COLLECTION);
    } else {
      await page.fill('#new-collection', COLLECTION);
      await page.click('#create-collection');
    }
    await page.waitForFunction((c) => document.querySelector('#collection').value === c, COLLECTION);
    const stored = await page.evaluate(() => localStorage.getItem('cairn.collection'));
    assert.equal(stored, COLLECTION, 'the chosen collection is remembered in localStorage');
  });

  await step(`upload ${FIXTURE_NAME} and wait for the job`, async () => {
    await page.setInputFiles('#upload', FIXTURE);
    await page.click('#upload-btn');
    await page.locator('#job-progress').waitFor({ state: 'visible' });
    const state = await page.waitForFunction(() => {
      const s = document.querySelector('#job')?.dataset.state;
      return s === 'done' || s === 'failed' || s === 'cancelled' ? s : null;
    }, null, { timeout: INGEST_TIMEOUT }).then((h) => h.jsonValue());
    const status = (await page.textContent('#job-status')).trim();
    assert.equal(state, 'done', `the ingestion job ended "${state}": ${status}`);
    assert.match(status, /done/, `#job-status says "${status}"`);
    assert.doesNotMatch(status, /Skipped/i, `a file was skipped: ${status}`);
    const [value, max] = await page.$eval('#job-progress', (p) => [p.value, p.max]);
    assert.equal(value, max, `the progress bar is full (${value}/${max})`);
  });

  await step(`see ${FIXTURE_NAME} in #documents`, async () => {
    const row = page.locator('#documents tbody tr', { hasText: FIXTURE_NAME });
    await row.waitFor({ state: 'visible' });
    const cells = await row.locator('td').allTextContents();
    assert.equal(cells[0], FIXTURE_NAME);
    assert.ok(Number(cells[2]) >= 1, `the document has chunks (${cells[2]})`);
  });

  const answer = await step('ask a question and wait for the streamed answer', async () => {
    await page.fill('#question', QUESTION);
    await page.click('#ask');
    const state = await page.waitForFunction(() => {
      const s = document.querySelector('#answer-box')?.dataset.state;
      return s === 'done' || s === 'error' || s === 'stopped' ? s : null;
    }, null, { timeout: ASK_TIMEOUT }).then((h) => h.jsonValue());
    if (state !== 'done') {
      const err = await page.textContent('#error-text');
      fail(`the answer ended "${state}": ${err}`);
    }
    const info = await page.evaluate(() => ({
      text: document.querySelector('#answer').textContent,
      tokens: Number(document.querySelector('#answer').dataset.tokens || 0),
      answered: document.querySelector('#answer-box').dataset.answered,
      answerId: document.querySelector('#answer-box').dataset.answerId,
      cites: document.querySelectorAll('#answer .cite').length,
      citations: document.querySelector('#citations').textContent,
      claims: Number(document.querySelector('#answer-box').dataset.claims || 0),
      unsupported: Number(document.querySelector('#answer-box').dataset.unsupported || 0),
      marked: document.querySelectorAll('#answer .unsupported').length,
      support: document.querySelector('#support-status')?.textContent || '',
    }));
    console.log(`\n  answer (${info.tokens} streamed tokens, answered=${info.answered}): ${JSON.stringify(info.text)}`);
    assert.ok(info.text.trim().length > 0, 'the answer is not empty');
    assert.equal(info.answered, 'true', 'the question is answered from the documents');
    assert.ok(info.tokens > 0, 'tokens were streamed before the final answer');
    assert.ok(info.answerId, 'the answer has an answer_id');
    assert.ok(info.cites >= 1, `the answer has at least one [n] citation button (found ${info.cites})`);
    assert.ok(info.citations.includes(FIXTURE_NAME), `the sources list mentions ${FIXTURE_NAME}: "${info.citations}"`);
    // Every answer is checked sentence by sentence; the unsupported ones are marked.
    assert.ok(info.claims >= 1, 'the answer carries its checked sentences');
    assert.equal(info.marked, info.unsupported, `${info.unsupported} unsupported sentences, ${info.marked} marked`);
    assert.match(info.support, /support/, `the support line: "${info.support}"`);
    await shot(page, '1-answer');
    return info;
  });

  const cited = await step('open the first citation', async () => {
    const first = page.locator('#answer .cite').first();
    const n = Number(await first.getAttribute('data-n'));
    await first.click();
    const dialog = page.locator('#passage');
    await dialog.waitFor({ state: 'visible' });
    const doc = (await page.textContent('#passage-doc')).trim();
    const passage = (await page.textContent('#passage-text')).trim();
    assert.ok(doc.includes(FIXTURE_NAME), `the passage comes from ${FIXTURE_NAME} (${doc})`);
    assert.ok(passage.length > 0, 'the passage has text');
    // The passage is a piece of the fixture: some line of it must appear in
    // the fixture verbatim (chunking may trim or re-join the lines).
    const norm = (s) => s.replace(/\s+/g, ' ').trim();
    const fixtureFlat = norm(fixtureText);
    const pieces = passage.split('\n').map(norm).filter((l) => l.length >= 20);
    const found = pieces.some((l) => fixtureFlat.includes(l.replace(/^#+\s*/, '')));
    assert.ok(found, `the passage shows text of the fixture: ${JSON.stringify(passage.slice(0, 200))}`);
    await shot(page, '2-citation');
    await page.click('#passage-close');
    await dialog.waitFor({ state: 'hidden' });
    return n;
  });

  await step('thumbs up, stored through /api/feedback', async () => {
    await page.locator('#thumbs-up').click();
    await page.waitForFunction(
      () => /feedback saved/.test(document.querySelector('#feedback-status').textContent),
    );
    const res = await api('GET', `/api/feedback?collection=${COLLECTION}`);
    assert.equal(res.status, 200, `GET /api/feedback answered ${res.status}: ${res.text}`);
    const records = (res.json && res.json.feedback) || [];
    const mine = records.find((r) => r.answer_id === answer.answerId);
    assert.ok(mine, `a feedback record for ${answer.answerId} exists (have ${records.map((r) => r.answer_id).join(', ') || 'none'})`);
    assert.equal(mine.rating, 'up');
    assert.deepEqual(mine.helpful_citations, [cited], 'the opened citation is recorded as helpful');
  });

  await step('a withdrawn answer and an unsupported sentence are shown as such', async () => {
    // A canned stream (the real generator's wording cannot be forced): text,
    // a restart that withdraws it, the second attempt, then the final answer
    // whose second sentence no source supports.
    const supported = 'The bridge opened in 1987 [1].';
    const invented = 'It is painted bright green every spring.';
    const done = {
      answer_id: 'a-canned', collection: COLLECTION, answered: true,
      answer: `${supported} ${invented}`,
      citations: [
        { n: 1, doc: FIXTURE_NAME, heading: 'History', start: 0, end: 10, text: 'The Kestrel Bridge' },
        // A PDF passage: named by its page, without the heading's own "Page 4".
        { n: 2, doc: 'manual.pdf', heading: 'Bridges > Page 4', page: 4, start: 0, end: 10, text: 'Kestrel' },
      ],
      retrieved: [], model: 'canned', prompt_tokens: 1, completion_tokens: 1, finish_reason: 'stop',
      timings_ms: { embed: 1, search: 1, critic: 1, first_token: 1, generate: 1, total: 1 },
      strategy: 'regenerated', critic: 'embedding',
      sentences: [
        { text: supported, citations: [1], support: 0.9, supported: true, claim: true },
        { text: invented, citations: [], support: 0.1, supported: false, claim: true },
      ],
    };
    const sse = [
      'event: token\ndata: {"text":"FIRST ATTEMPT "}\n\n',
      'event: restart\ndata: {"reason":"not supported by the sources"}\n\n',
      'event: token\ndata: {"text":"second attempt"}\n\n',
      `event: done\ndata: ${JSON.stringify(done)}\n\n`,
    ].join('');
    await page.route('**/api/ask', (route) => route.fulfill({
      status: 200, headers: { 'Content-Type': 'text/event-stream' }, body: sse,
    }));
    try {
      await page.fill('#question', 'What colour is the bridge?');
      await page.click('#ask');
      await page.waitForFunction(() => document.querySelector('#answer-box')?.dataset.answerId === 'a-canned');
      const shown = await page.evaluate(() => ({
        text: document.querySelector('#answer').textContent,
        marked: [...document.querySelectorAll('#answer .unsupported')].map((e) => e.textContent),
        support: document.querySelector('#support-status')?.textContent || '',
        cites: document.querySelectorAll('#answer .cite').length,
        sources: [...document.querySelectorAll('#citations li')].map((e) => e.textContent),
      }));
      assert.ok(!shown.text.includes('FIRST ATTEMPT'), `the withdrawn text is gone: ${shown.text}`);
      assert.equal(shown.marked.length, 1, `one sentence marked: ${JSON.stringify(shown.marked)}`);
      assert.ok(shown.marked[0].startsWith(invented), shown.marked[0]);
      assert.match(shown.support, /1 of 2 sentences/, shown.support);
      assert.equal(shown.cites, 1, 'the supported sentence keeps its citation button');
      assert.ok(shown.sources.some((t) => t.endsWith('manual.pdf, page 4 — Bridges')),
        `a PDF source is named by its page: ${JSON.stringify(shown.sources)}`);
      await shot(page, '3-unsupported');
    } finally {
      await page.unroute('**/api/ask');
    }
  });

  await step(`delete ${FIXTURE_NAME} through the UI`, async () => {
    const row = page.locator('#documents tbody tr', { hasText: FIXTURE_NAME });
    const button = row.getByRole('button', { name: /delete/i });
    await button.click();
    await page.waitForFunction(
      () => [...document.querySelectorAll('#documents tbody button')].some((b) => b.textContent === 'Really delete?'),
    );
    await button.click();
    await row.waitFor({ state: 'detached' });
    await shot(page, '3-deleted');
    const res = await api('GET', `/api/collections/${COLLECTION}/documents`);
    assert.ok(!(res.json?.documents || []).some((d) => d.name === FIXTURE_NAME), 'the server no longer lists it');
  });

  await step('no errors on the page', async () => {
    assert.ok(await page.locator('#error').isHidden(), `error banner: ${await page.textContent('#error-text')}`);
    assert.deepEqual(pageErrors, [], 'uncaught page errors');
    assert.deepEqual(failedResponses, [], 'server errors');
  });

  console.log(`\nPASS in ${secs().trim()} s. Screenshots:\n${screenshots.map((s) => `  ${s}`).join('\n')}`);
  await browser.close();
  process.exit(0);
} catch (err) {
  console.log('FAILED');
  console.error(`\ne2e FAILED at step "${currentStep}":\n  ${err.message}`);
  if (pageErrors.length) console.error(`  page errors: ${pageErrors.join(' | ')}`);
  if (failedResponses.length) console.error(`  server errors: ${failedResponses.join(' | ')}`);
  if (page) {
    try {
      const banner = await page.locator('#error').isVisible() ? await page.textContent('#error-text') : null;
      if (banner) console.error(`  error banner: ${banner}`);
      const file = await shot(page, 'failure');
      console.error(`  screenshot: ${file}`);
    } catch (e) {
      console.error(`  (no screenshot: ${e.message})`);
    }
  }
  if (browser) await browser.close().catch(() => {});
  process.exit(1);
}
