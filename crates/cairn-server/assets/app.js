// Cairn web UI. Plain JavaScript, no build step; everything goes through the
// HTTP API described in docs/http-api.md.
'use strict';

(() => {
  const KEY_COLLECTION = 'cairn.collection';
  const KEY_API_KEY = 'cairn.apiKey';
  const JOB_POLL_MS = 500;
  const CONFIRM_MS = 4000;

  const $ = (sel) => document.querySelector(sel);
  const el = {
    collection: $('#collection'),
    collectionInfo: $('#collection-info'),
    newCollectionForm: $('#new-collection-form'),
    newCollection: $('#new-collection'),
    error: $('#error'),
    errorText: $('#error-text'),
    errorDismiss: $('#error-dismiss'),
    auth: $('#auth'),
    authForm: $('#auth-form'),
    apiKey: $('#api-key'),
    apiKeyForget: $('#api-key-forget'),
    askForm: $('#ask-form'),
    question: $('#question'),
    ask: $('#ask'),
    stop: $('#stop'),
    askStatus: $('#ask-status'),
    answerBox: $('#answer-box'),
    answer: $('#answer'),
    citationsBox: $('#citations-box'),
    citations: $('#citations'),
    closestBox: $('#closest-box'),
    closest: $('#closest'),
    feedback: $('#feedback'),
    thumbsUp: $('#thumbs-up'),
    thumbsDown: $('#thumbs-down'),
    feedbackComment: $('#feedback-comment'),
    feedbackStatus: $('#feedback-status'),
    uploadForm: $('#upload-form'),
    upload: $('#upload'),
    uploadBtn: $('#upload-btn'),
    job: $('#job'),
    jobProgress: $('#job-progress'),
    jobStatus: $('#job-status'),
    documents: $('#documents'),
    documentsBody: $('#documents tbody'),
    documentsEmpty: $('#documents-empty'),
    passage: $('#passage'),
    passageTitle: $('#passage-title'),
    passageDoc: $('#passage-doc'),
    passageHeading: $('#passage-heading'),
    passageText: $('#passage-text'),
    passageClose: $('#passage-close'),
  };

  // State of the current answer.
  const current = {
    answerId: null,
    citations: [], // [{n, doc, heading, start, end, text}]
    clicked: new Set(), // citation numbers the user opened
    abort: null, // AbortController of the streaming request
  };
  let jobTimer = null;

  // ---------------------------------------------------------------- storage

  const store = {
    get(key) {
      try { return localStorage.getItem(key); } catch { return null; }
    },
    set(key, value) {
      try {
        if (value === null || value === '') localStorage.removeItem(key);
        else localStorage.setItem(key, value);
      } catch { /* storage disabled: the choice is not remembered */ }
    },
  };

  // ------------------------------------------------------------------ errors

  class ApiError extends Error {
    constructor(status, message, body) {
      super(message);
      this.status = status;
      this.body = body;
    }
  }

  function showError(message) {
    el.errorText.textContent = message;
    el.error.hidden = false;
  }

  function clearError() {
    el.error.hidden = true;
    el.errorText.textContent = '';
  }

  // Show any failure to the user; a 401 also asks for an API key.
  function report(err, context) {
    if (err && err.name === 'AbortError') return;
    let message = err && err.message ? err.message : String(err);
    if (err instanceof ApiError && err.status === 401) {
      askForKey();
      message = store.get(KEY_API_KEY)
        ? 'The API key was refused. Enter a valid key.'
        : 'This server needs an API key: enter it in the API key box.';
    } else if (err instanceof TypeError) {
      message = `Cannot reach the server (${message}).`;
    }
    showError(context ? `${context}: ${message}` : message);
  }

  // --------------------------------------------------------------------- API

  function headers(extra) {
    const h = new Headers(extra || {});
    const key = store.get(KEY_API_KEY);
    if (key) h.set('Authorization', `Bearer ${key}`);
    return h;
  }

  async function errorFrom(res) {
    let body = null;
    let message = `${res.status} ${res.statusText || 'error'}`;
    const text = await res.text().catch(() => '');
    if (text) {
      try {
        body = JSON.parse(text);
        const e = body && body.error;
        if (e && e.message) message = e.message;
      } catch {
        message = `${message}: ${text.slice(0, 300)}`;
      }
    }
    if (res.status === 503) {
      const retry = res.headers.get('Retry-After');
      if (retry) message += ` — try again in ${retry} s`;
    }
    return new ApiError(res.status, message, body);
  }

  // fetch + auth + error handling. Returns the parsed JSON (or null for 204).
  async function api(method, path, { json, body, signal } = {}) {
    const init = { method, headers: headers(), signal };
    if (json !== undefined) {
      init.headers.set('Content-Type', 'application/json');
      init.body = JSON.stringify(json);
    } else if (body !== undefined) {
      init.body = body;
    }
    const res = await fetch(path, init);
    if (!res.ok) throw await errorFrom(res);
    if (res.status === 204) return null;
    const type = res.headers.get('Content-Type') || '';
    return type.includes('json') ? res.json() : res.text();
  }

  const enc = encodeURIComponent;

  // ------------------------------------------------------------------- auth

  function askForKey() {
    el.auth.hidden = false;
    el.apiKey.value = store.get(KEY_API_KEY) || '';
    el.apiKey.focus();
  }

  el.authForm.addEventListener('submit', (ev) => {
    ev.preventDefault();
    const key = el.apiKey.value.trim();
    if (!key) {
      el.apiKey.focus();
      return;
    }
    store.set(KEY_API_KEY, key);
    el.auth.hidden = true;
    clearError();
    loadCollections();
  });

  el.apiKeyForget.addEventListener('click', () => {
    store.set(KEY_API_KEY, null);
    el.apiKey.value = '';
    el.apiKey.focus();
  });

  el.errorDismiss.addEventListener('click', clearError);

  // ------------------------------------------------------------ collections

  function selectedCollection() {
    return el.collection.value || null;
  }

  function describeCollection(c) {
    if (!c) return '';
    const docs = `${c.documents} document${c.documents === 1 ? '' : 's'}`;
    const chunks = `${c.chunks} chunk${c.chunks === 1 ? '' : 's'}`;
    return `${docs}, ${chunks}`;
  }

  let collections = [];

  async function loadCollections(prefer) {
    try {
      const data = await api('GET', '/api/collections');
      collections = (data && data.collections) || [];
      const wanted = prefer || selectedCollection() || store.get(KEY_COLLECTION);
      el.collection.replaceChildren();
      if (collections.length === 0) {
        const opt = new Option('No collections yet — create one', '');
        opt.disabled = true;
        opt.selected = true;
        el.collection.append(opt);
        el.collection.disabled = true;
      } else {
        el.collection.disabled = false;
        for (const c of collections) el.collection.append(new Option(c.name, c.name));
        const names = collections.map((c) => c.name);
        el.collection.value = names.includes(wanted) ? wanted : names[0];
        store.set(KEY_COLLECTION, el.collection.value);
      }
      updateCollectionInfo();
      await loadDocuments();
    } catch (err) {
      el.collection.replaceChildren(new Option('Unavailable', ''));
      report(err, 'Could not load the collections');
    } finally {
      document.body.dataset.ready = 'true';
    }
  }

  function updateCollectionInfo() {
    const c = collections.find((x) => x.name === selectedCollection());
    el.collectionInfo.textContent = describeCollection(c);
  }

  // Refresh the counts next to the picker without touching the selection.
  async function refreshCollectionInfo() {
    try {
      const data = await api('GET', '/api/collections');
      collections = (data && data.collections) || [];
      updateCollectionInfo();
    } catch (err) {
      report(err, 'Could not load the collections');
    }
  }

  el.collection.addEventListener('change', () => {
    store.set(KEY_COLLECTION, selectedCollection());
    clearError();
    resetAnswer();
    el.job.hidden = true;
    updateCollectionInfo();
    loadDocuments();
  });

  el.newCollectionForm.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const name = el.newCollection.value.trim();
    if (!/^[A-Za-z0-9_-]{1,64}$/.test(name)) {
      showError('A collection name is 1 to 64 letters, digits, "_" or "-".');
      el.newCollection.focus();
      return;
    }
    clearError();
    try {
      await api('POST', '/api/collections', { json: { name } });
      el.newCollection.value = '';
      store.set(KEY_COLLECTION, name);
      resetAnswer();
      await loadCollections(name);
    } catch (err) {
      report(err, `Could not create the collection "${name}"`);
    }
  });

  // -------------------------------------------------------------- documents

  function formatSize(bytes) {
    if (typeof bytes !== 'number' || !Number.isFinite(bytes)) return '';
    if (bytes < 1024) return `${bytes} B`;
    const units = ['KB', 'MB', 'GB', 'TB'];
    let v = bytes;
    let i = -1;
    do { v /= 1024; i += 1; } while (v >= 1024 && i < units.length - 1);
    return `${v < 10 ? v.toFixed(1) : Math.round(v)} ${units[i]}`;
  }

  async function loadDocuments() {
    const name = selectedCollection();
    if (!name) {
      renderDocuments([]);
      return;
    }
    try {
      const data = await api('GET', `/api/collections/${enc(name)}/documents`);
      if (name !== selectedCollection()) return; // the user switched meanwhile
      renderDocuments((data && data.documents) || []);
    } catch (err) {
      renderDocuments([]);
      report(err, `Could not list the documents of "${name}"`);
    }
  }

  function renderDocuments(docs) {
    const rows = docs.map((d) => {
      const tr = document.createElement('tr');
      tr.dataset.id = String(d.id);
      tr.dataset.name = d.name;
      const cells = [
        [d.name, 'name'],
        [d.format || '', ''],
        [d.chunks != null ? String(d.chunks) : '', 'num'],
        [formatSize(d.size), 'num'],
      ];
      for (const [text, cls] of cells) {
        const td = document.createElement('td');
        td.textContent = text;
        if (cls) td.className = cls;
        if (cls === 'name') td.title = text;
        tr.append(td);
      }
      const td = document.createElement('td');
      td.className = 'actions';
      const del = document.createElement('button');
      del.type = 'button';
      del.className = 'danger delete';
      del.textContent = 'Delete';
      del.setAttribute('aria-label', `Delete ${d.name}`);
      del.addEventListener('click', () => onDelete(del, d));
      td.append(del);
      tr.append(td);
      return tr;
    });
    el.documentsBody.replaceChildren(...rows);
    el.documents.hidden = docs.length === 0;
    el.documentsEmpty.hidden = docs.length !== 0;
  }

  // Two-step delete: the first click arms the button, the second deletes.
  async function onDelete(button, doc) {
    if (button.dataset.confirm !== 'true') {
      button.dataset.confirm = 'true';
      button.textContent = 'Really delete?';
      button.setAttribute('aria-label', `Really delete ${doc.name}?`);
      button.classList.add('armed');
      button._disarm = setTimeout(() => disarm(button, doc), CONFIRM_MS);
      return;
    }
    clearTimeout(button._disarm);
    button.disabled = true;
    button.textContent = 'Deleting…';
    const name = selectedCollection();
    clearError();
    try {
      await api('DELETE', `/api/collections/${enc(name)}/documents/${enc(doc.id)}`);
      await loadDocuments();
      await refreshCollectionInfo();
    } catch (err) {
      button.disabled = false;
      disarm(button, doc);
      report(err, `Could not delete "${doc.name}"`);
    }
  }

  function disarm(button, doc) {
    button.dataset.confirm = 'false';
    button.textContent = 'Delete';
    button.setAttribute('aria-label', `Delete ${doc.name}`);
    button.classList.remove('armed');
  }

  // ----------------------------------------------------------------- upload

  el.uploadForm.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const name = selectedCollection();
    const files = Array.from(el.upload.files || []);
    clearError();
    if (!name) {
      showError('Create or pick a collection before uploading.');
      return;
    }
    if (files.length === 0) {
      showError('Choose one or more files to upload.');
      el.upload.focus();
      return;
    }
    const form = new FormData();
    for (const f of files) form.append('file', f, f.name);
    el.uploadBtn.disabled = true;
    showJob({ state: 'uploading', files_done: 0, files_total: files.length });
    try {
      const data = await api('POST', `/api/collections/${enc(name)}/documents`, { body: form });
      el.upload.value = '';
      const job = data && data.job;
      if (!job || !job.id) throw new Error('The server did not return a job.');
      showJob(job);
      pollJob(job.id);
    } catch (err) {
      el.job.hidden = true;
      el.uploadBtn.disabled = false;
      report(err, 'Upload failed');
    }
  });

  function showJob(job) {
    // A job of another collection than the one shown is not displayed.
    if (job.collection && job.collection !== selectedCollection()) {
      el.job.hidden = true;
      return;
    }
    el.job.hidden = false;
    el.job.dataset.state = job.state;
    const total = Math.max(job.files_total || 0, 1);
    el.jobProgress.max = total;
    el.jobProgress.value = job.state === 'done' ? total : Math.min(job.files_done || 0, total);

    const parts = [];
    switch (job.state) {
      case 'uploading': parts.push(`Uploading ${plural(job.files_total, 'file')}…`); break;
      case 'queued': parts.push('Queued…'); break;
      case 'running': parts.push(`Ingesting: ${job.files_done || 0} of ${plural(job.files_total, 'file')}`); break;
      case 'done':
        parts.push(`done — ${plural(job.files_done, 'file')}, ${plural(job.chunks_added, 'chunk')} added`);
        break;
      case 'failed': parts.push(`failed: ${job.error || 'unknown error'}`); break;
      case 'cancelled': parts.push('cancelled'); break;
      default: parts.push(String(job.state));
    }
    el.jobStatus.replaceChildren(document.createTextNode(parts.join(' ')));
    el.jobStatus.classList.toggle('error-text', job.state === 'failed');

    const skipped = job.skipped || [];
    if (skipped.length) {
      const p = document.createElement('p');
      p.className = 'skipped-title';
      p.textContent = `Skipped ${plural(skipped.length, 'file')}:`;
      const ul = document.createElement('ul');
      ul.className = 'skipped';
      for (const s of skipped) {
        const li = document.createElement('li');
        li.textContent = `${s.path}: ${s.reason}`;
        ul.append(li);
      }
      el.jobStatus.append(p, ul);
    }
  }

  function plural(n, word) {
    const v = n || 0;
    return `${v} ${word}${v === 1 ? '' : 's'}`;
  }

  function pollJob(id) {
    clearTimeout(jobTimer);
    const tick = async () => {
      let job;
      try {
        job = await api('GET', `/api/jobs/${enc(id)}`);
      } catch (err) {
        el.uploadBtn.disabled = false;
        report(err, 'Could not follow the ingestion job');
        return;
      }
      showJob(job);
      if (job.state === 'queued' || job.state === 'running') {
        jobTimer = setTimeout(tick, JOB_POLL_MS);
        return;
      }
      el.uploadBtn.disabled = false;
      if (job.state === 'failed') showError(`Ingestion failed: ${job.error || 'unknown error'}`);
      if (job.collection === selectedCollection() || !job.collection) await loadDocuments();
      await refreshCollectionInfo();
    };
    jobTimer = setTimeout(tick, JOB_POLL_MS);
  }

  // -------------------------------------------------------------------- ask

  function resetAnswer() {
    if (current.abort) current.abort.abort();
    current.answerId = null;
    current.citations = [];
    current.clicked = new Set();
    el.answerBox.hidden = true;
    delete el.answerBox.dataset.state;
    delete el.answerBox.dataset.answerId;
    delete el.answerBox.dataset.answered;
    el.answer.classList.remove('streaming', 'not-answered', 'incomplete');
    el.answer.replaceChildren();
    el.citations.replaceChildren();
    el.closest.replaceChildren();
    el.citationsBox.hidden = true;
    el.closestBox.hidden = true;
    el.feedback.hidden = true;
    el.askStatus.textContent = '';
  }

  el.question.addEventListener('keydown', (ev) => {
    if (ev.key === 'Enter' && !ev.shiftKey && !ev.isComposing) {
      ev.preventDefault();
      el.askForm.requestSubmit();
    }
  });

  el.stop.addEventListener('click', () => {
    if (current.abort) current.abort.abort();
  });

  el.askForm.addEventListener('submit', (ev) => {
    ev.preventDefault();
    ask();
  });

  function setAsking(on) {
    el.ask.disabled = on;
    el.stop.hidden = !on;
    // Screen readers read the answer once, when it is complete.
    el.answer.setAttribute('aria-busy', on ? 'true' : 'false');
  }

  async function ask() {
    const question = el.question.value.trim();
    const collection = selectedCollection();
    clearError();
    if (!question) {
      el.question.focus();
      return;
    }
    if (!collection) {
      showError('Create or pick a collection first.');
      return;
    }
    resetAnswer();
    const controller = new AbortController();
    current.abort = controller;
    el.answerBox.hidden = false;
    el.answerBox.dataset.state = 'streaming';
    el.answer.dataset.tokens = '0';
    el.answer.classList.add('streaming');
    el.askStatus.textContent = 'Searching and thinking…';
    setAsking(true);
    const started = performance.now();
    let finished = false;
    try {
      const res = await fetch('/api/ask', {
        method: 'POST',
        headers: headers({ 'Content-Type': 'application/json', Accept: 'text/event-stream' }),
        body: JSON.stringify({ question, collection, stream: true }),
        signal: controller.signal,
      });
      if (!res.ok) throw await errorFrom(res);
      const type = res.headers.get('Content-Type') || '';
      if (!type.includes('text/event-stream')) {
        // A server that ignores `stream` still gives the whole answer.
        onDone(await res.json(), started);
        finished = true;
        return;
      }
      let tokens = 0;
      await readEvents(res.body, (event, data) => {
        if (event === 'token') {
          const piece = parseJson(data);
          if (piece && typeof piece.text === 'string') {
            if (tokens === 0) el.askStatus.textContent = 'Answering…';
            tokens += 1;
            el.answer.dataset.tokens = String(tokens);
            el.answer.append(document.createTextNode(piece.text));
          }
        } else if (event === 'restart') {
          // The check found the streamed answer unsupported: it is withdrawn
          // and generated again.
          const body = parseJson(data);
          el.answer.replaceChildren();
          el.askStatus.textContent = `Checking… ${(body && body.reason) || 'answering again'}`;
        } else if (event === 'done') {
          const body = parseJson(data);
          if (!body) throw new Error('The final answer could not be read.');
          onDone(body, started);
          finished = true;
        } else if (event === 'error') {
          const body = parseJson(data);
          const e = body && body.error;
          throw new ApiError(e && e.type === 'unauthorized' ? 401 : 500,
            (e && e.message) || data || 'The answer failed.', body);
        }
      });
      if (!finished) throw new Error('The answer stream ended before the answer was complete.');
    } catch (err) {
      el.answer.classList.remove('streaming');
      if (err && err.name === 'AbortError') {
        el.answerBox.dataset.state = 'stopped';
        el.askStatus.textContent = 'Stopped.';
        el.answer.classList.add('incomplete');
      } else {
        el.answerBox.dataset.state = 'error';
        el.askStatus.textContent = el.answer.textContent ? 'The answer was interrupted.' : '';
        el.answer.classList.add('incomplete');
        if (!el.answer.textContent) el.answerBox.hidden = true;
        report(err, 'The question could not be answered');
      }
    } finally {
      if (current.abort === controller) current.abort = null;
      setAsking(false);
    }
  }

  function parseJson(text) {
    try { return JSON.parse(text); } catch { return null; }
  }

  // Read a text/event-stream body, calling onEvent(event, data) per event.
  async function readEvents(stream, onEvent) {
    const reader = stream.getReader();
    const decoder = new TextDecoder();
    let buffer = '';
    const dispatch = (block) => {
      let event = 'message';
      const data = [];
      for (const line of block.split('\n')) {
        if (line === '' || line.startsWith(':')) continue;
        const colon = line.indexOf(':');
        const field = colon === -1 ? line : line.slice(0, colon);
        let value = colon === -1 ? '' : line.slice(colon + 1);
        if (value.startsWith(' ')) value = value.slice(1);
        if (field === 'event') event = value;
        else if (field === 'data') data.push(value);
      }
      if (data.length) onEvent(event, data.join('\n'));
    };
    try {
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffer += decoder.decode(value, { stream: true });
        buffer = buffer.replace(/\r\n?/g, '\n');
        let cut;
        while ((cut = buffer.indexOf('\n\n')) !== -1) {
          const block = buffer.slice(0, cut);
          buffer = buffer.slice(cut + 2);
          dispatch(block);
        }
      }
      buffer += decoder.decode();
      if (buffer.trim()) dispatch(buffer.replace(/\r\n?/g, '\n'));
    } catch (err) {
      reader.cancel().catch(() => {});
      throw err;
    } finally {
      reader.releaseLock();
    }
  }

  function onDone(res, started) {
    current.answerId = res.answer_id || null;
    current.citations = Array.isArray(res.citations) ? res.citations : [];
    el.answer.classList.remove('streaming');
    el.answerBox.dataset.state = 'done';
    el.answerBox.dataset.answered = String(!!res.answered);
    if (current.answerId) el.answerBox.dataset.answerId = current.answerId;

    renderAnswerText(res.answer || '', Array.isArray(res.sentences) ? res.sentences : []);
    renderCitations(current.citations);

    const retrieved = Array.isArray(res.retrieved) ? res.retrieved : [];
    el.closestBox.hidden = true;
    if (res.answered === false) {
      el.answer.classList.add('not-answered');
      renderClosest(retrieved);
    } else {
      el.answer.classList.remove('not-answered');
    }

    const secs = ((performance.now() - started) / 1000).toFixed(1);
    el.askStatus.textContent = `${res.model ? `${res.model}, ` : ''}${secs} s`;

    el.feedback.hidden = !current.answerId;
    el.thumbsUp.disabled = false;
    el.thumbsDown.disabled = false;
    el.thumbsUp.setAttribute('aria-pressed', 'false');
    el.thumbsDown.setAttribute('aria-pressed', 'false');
    el.feedbackComment.value = '';
    el.feedbackStatus.textContent = '';
  }

  // The answer text, with each [n] / [n, m] marker turned into buttons and
  // each sentence that no source supports marked.
  function renderAnswerText(text, sentences) {
    const unsupported = sentences.filter((s) => s.claim && !s.supported);
    const claims = sentences.filter((s) => s.claim).length;
    el.answerBox.dataset.unsupported = String(unsupported.length);
    el.answerBox.dataset.claims = String(claims);
    const nodes = [];
    let at = 0;
    for (const s of unsupported) {
      const i = text.indexOf(s.text, at);
      if (i < 0) continue;
      nodes.push(...markedText(text.slice(at, i)));
      const span = document.createElement('span');
      span.className = 'unsupported';
      span.title = 'No source supports this sentence.';
      span.append(...markedText(s.text));
      const flag = document.createElement('span');
      flag.className = 'unsupported-flag';
      flag.textContent = ' (not supported by the sources)';
      span.append(flag);
      nodes.push(span);
      at = i + s.text.length;
    }
    nodes.push(...markedText(text.slice(at)));
    el.answer.replaceChildren(...nodes);
    if (claims > 0) {
      const note = document.createElement('p');
      note.id = 'support-status';
      note.className = unsupported.length ? 'support warn' : 'support';
      note.textContent = unsupported.length
        ? `${claims - unsupported.length} of ${claims} sentences are supported by the sources; the marked ones are not.`
        : `Every sentence is supported by the sources (${claims}).`;
      el.answer.append(note);
    }
  }

  // Text with [n] markers as citation buttons.
  function markedText(text) {
    const known = new Set(current.citations.map((c) => c.n));
    const nodes = [];
    const re = /\[(\d+(?:\s*,\s*\d+)*)\]/g;
    let last = 0;
    let m;
    while ((m = re.exec(text)) !== null) {
      const numbers = m[1].split(',').map((s) => Number(s.trim()));
      if (!numbers.every((n) => known.has(n))) continue; // leave it as text
      if (m.index > last) nodes.push(document.createTextNode(text.slice(last, m.index)));
      numbers.forEach((n, i) => {
        if (i > 0) nodes.push(document.createTextNode(' '));
        nodes.push(citeButton(n));
      });
      last = m.index + m[0].length;
    }
    if (last < text.length) nodes.push(document.createTextNode(text.slice(last)));
    return nodes;
  }

  function citeButton(n) {
    const b = document.createElement('button');
    b.type = 'button';
    b.className = 'cite';
    b.dataset.n = String(n);
    b.textContent = `[${n}]`;
    const c = current.citations.find((x) => x.n === n);
    b.setAttribute('aria-label', `Source ${n}${c ? `: ${c.doc}` : ''}`);
    return b;
  }

  // A PDF passage is named by its page ("doc, page N"), and its heading
  // path's own trailing "Page N" is left out (cairn_core::passage_label).
  function docLabel(x) {
    return x.page ? `${x.doc}, page ${x.page}` : x.doc;
  }
  function headingLabel(x) {
    return x.page ? (x.heading || '').replace(/(^| > )Page \d+$/, '') : x.heading;
  }

  function renderCitations(citations) {
    const items = citations.map((c) => {
      const li = document.createElement('li');
      const b = citeButton(c.n);
      const doc = document.createElement('span');
      doc.className = 'doc';
      doc.textContent = docLabel(c);
      li.append(b, ' ', doc);
      if (headingLabel(c)) {
        const h = document.createElement('span');
        h.className = 'heading';
        h.textContent = ` — ${headingLabel(c)}`;
        li.append(h);
      }
      return li;
    });
    el.citations.replaceChildren(...items);
    el.citationsBox.hidden = citations.length === 0;
  }

  function renderClosest(hits) {
    const items = hits.map((h, i) => {
      const li = document.createElement('li');
      const b = document.createElement('button');
      b.type = 'button';
      b.className = 'passage-link';
      b.textContent = (h.doc && docLabel(h)) || `Passage ${i + 1}`;
      b.addEventListener('click', () => openPassage({
        title: `Closest passage ${i + 1}`,
        doc: docLabel(h),
        heading: headingLabel(h),
        text: h.text,
      }));
      li.append(b);
      if (headingLabel(h)) {
        const s = document.createElement('span');
        s.className = 'heading';
        s.textContent = ` — ${headingLabel(h)}`;
        li.append(s);
      }
      if (h.text) {
        const p = document.createElement('p');
        p.className = 'snippet';
        p.textContent = h.text.length > 240 ? `${h.text.slice(0, 240)}…` : h.text;
        li.append(p);
      }
      return li;
    });
    el.closest.replaceChildren(...items);
    el.closestBox.hidden = hits.length === 0;
  }

  // Citation buttons in the answer and in the source list.
  el.answerBox.addEventListener('click', (ev) => {
    const b = ev.target.closest('button.cite');
    if (!b) return;
    const n = Number(b.dataset.n);
    const c = current.citations.find((x) => x.n === n);
    if (!c) return;
    current.clicked.add(n);
    b.classList.add('visited');
    openPassage({ title: `Source [${n}]`, doc: docLabel(c), heading: headingLabel(c), text: c.text });
  });

  // ---------------------------------------------------------------- passage

  let passageOpener = null;

  function openPassage({ title, doc, heading, text }) {
    passageOpener = document.activeElement;
    el.passageTitle.textContent = title;
    el.passageDoc.textContent = doc || '';
    el.passageHeading.textContent = heading || '(no section)';
    el.passageText.textContent = text || '';
    if (typeof el.passage.showModal === 'function') {
      if (!el.passage.open) el.passage.showModal();
    } else {
      el.passage.setAttribute('open', '');
    }
    el.passageClose.focus();
  }

  function closePassage() {
    if (typeof el.passage.close === 'function') el.passage.close();
    else el.passage.removeAttribute('open');
  }

  el.passageClose.addEventListener('click', closePassage);
  el.passage.addEventListener('close', () => {
    if (passageOpener && typeof passageOpener.focus === 'function') passageOpener.focus();
    passageOpener = null;
  });
  // A click on the backdrop (outside the dialog's box) closes it.
  el.passage.addEventListener('click', (ev) => {
    if (ev.target !== el.passage) return;
    const r = el.passage.getBoundingClientRect();
    const inside = ev.clientX >= r.left && ev.clientX <= r.right
      && ev.clientY >= r.top && ev.clientY <= r.bottom;
    if (!inside) closePassage();
  });

  // --------------------------------------------------------------- feedback

  async function sendFeedback(rating) {
    if (!current.answerId) return;
    clearError();
    const body = {
      answer_id: current.answerId,
      rating,
      helpful_citations: Array.from(current.clicked).sort((a, b) => a - b),
    };
    const comment = el.feedbackComment.value.trim();
    if (comment) body.comment = comment;
    el.thumbsUp.disabled = true;
    el.thumbsDown.disabled = true;
    el.feedbackStatus.textContent = 'Saving…';
    try {
      await api('POST', '/api/feedback', { json: body });
      (rating === 'up' ? el.thumbsUp : el.thumbsDown).setAttribute('aria-pressed', 'true');
      el.feedbackStatus.textContent = 'Thanks — feedback saved';
    } catch (err) {
      el.thumbsUp.disabled = false;
      el.thumbsDown.disabled = false;
      el.feedbackStatus.textContent = '';
      report(err, 'Could not save the feedback');
    }
  }

  el.thumbsUp.addEventListener('click', () => sendFeedback('up'));
  el.thumbsDown.addEventListener('click', () => sendFeedback('down'));

  // ------------------------------------------------------------------ start

  loadCollections();
})();
