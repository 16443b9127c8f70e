// The web chat page: a conversation with a served model over /v1/chat/completions,
// streamed (server-sent events read from fetch's body), stoppable, with markdown replies.
// Every URL is relative to the page's <base>, so the page works under a root path or a mount.

import { renderMarkdown } from './markdown.js';

const $ = (id) => document.getElementById(id);
const ui = {
  model: $('model'), newChat: $('new-chat'), settings: $('settings'), system: $('system'),
  temperature: $('temperature'), maxTokens: $('max-tokens'), extra: $('extra'), apiKey: $('api-key'),
  error: $('error'), messages: $('messages'), empty: $('empty'), composer: $('composer'), prompt: $('prompt'),
  send: $('send'), stop: $('stop'),
};

let history = [];        // the conversation so far: {role, content}
let controller = null;   // the AbortController of the reply streaming now
let conversation = 0;    // counts "New chat"s: a reply stopped by one is not added to the new history

// ---- settings kept between visits (the API key only for this tab) ----

const saved = storage(() => window.localStorage);
const session = storage(() => window.sessionStorage);

function storage(get) {
  try {
    const s = get();
    return { get: (k) => s.getItem(k), set: (k, v) => s.setItem(k, v) };
  } catch {
    return { get: () => null, set: () => {} };
  }
}

for (const [key, input] of [['system', ui.system], ['temperature', ui.temperature], ['maxTokens', ui.maxTokens],
                            ['extra', ui.extra]]) {
  const value = saved.get(`allama.${key}`);
  if (value !== null) input.value = value;
  input.addEventListener('change', () => saved.set(`allama.${key}`, input.value));
}
ui.apiKey.value = session.get('allama.apiKey') || '';
ui.apiKey.addEventListener('change', () => {
  session.set('allama.apiKey', ui.apiKey.value.trim());
  clearError();
  loadModels();
});
ui.model.addEventListener('change', () => saved.set('allama.model', ui.model.value));

function headers() {
  const key = ui.apiKey.value.trim();
  return { 'Content-Type': 'application/json', ...(key ? { Authorization: `Bearer ${key}` } : {}) };
}

// ---- errors ----

class ServerError extends Error {}

function showError(message) {
  ui.error.textContent = message;
  ui.error.hidden = false;
}

function clearError() {
  ui.error.hidden = true;
  ui.error.textContent = '';
}

// The message of an error response: OpenAI's {"error": {"message"}}, else the status line.
async function errorOf(response) {
  let message = `${response.status} ${response.statusText}`.trim();
  try {
    const body = JSON.parse(await response.text());
    const detail = body && (body.error ? body.error.message || body.error : body.detail);
    if (detail) message = typeof detail === 'string' ? detail : JSON.stringify(detail);
  } catch { /* not JSON: keep the status line */ }
  if (response.status === 401) {
    ui.settings.open = true;
    ui.apiKey.focus();
    message += ' This server needs its API key: enter it under Settings.';
  }
  return new ServerError(message);
}

function networkError(error) {
  return new ServerError(`Network error: ${error.message || error} (is the server running?)`);
}

// ---- models ----

async function loadModels() {
  let response;
  try {
    response = await fetch('v1/models', { headers: headers() });
  } catch (error) {
    showError(networkError(error).message);
    return;
  }
  if (!response.ok) {
    showError((await errorOf(response)).message);
    return;
  }
  const models = ((await response.json()).data || []).map((m) => m.id);
  const wanted = ui.model.value || saved.get('allama.model');
  ui.model.replaceChildren(...models.map((id) => new Option(id, id)));
  if (models.includes(wanted)) ui.model.value = wanted;
  if (!models.length) showError('The server serves no models.');
}

// ---- the conversation ----

function addMessage(role, label) {
  ui.empty.hidden = true;
  const root = document.createElement('article');
  root.className = `message ${role}`;
  const who = document.createElement('div');
  who.className = 'role';
  who.textContent = label;
  const thinking = document.createElement('details');
  thinking.className = 'thinking';
  thinking.hidden = true;
  thinking.append(Object.assign(document.createElement('summary'), { textContent: 'Thinking' }),
                  document.createElement('div'));
  const content = document.createElement('div');
  content.className = 'content';
  const note = document.createElement('div');
  note.className = 'note';
  root.append(who, thinking, content, note);
  ui.messages.append(root);
  return { root, thinking, content, note };
}

function render(message, text, reasoning) {
  const follow = nearBottom();
  message.content.innerHTML = renderMarkdown(text);  // renderMarkdown escapes the text first
  if (reasoning) {
    message.thinking.hidden = false;
    message.thinking.lastChild.innerHTML = renderMarkdown(reasoning);
  }
  if (follow) scrollToBottom();
}

function nearBottom() {
  const page = document.scrollingElement;
  return page.scrollHeight - page.scrollTop - page.clientHeight < 80;
}

function scrollToBottom() {
  document.scrollingElement.scrollTop = document.scrollingElement.scrollHeight;
}

function setBusy(busy) {
  ui.send.disabled = busy;
  ui.stop.disabled = !busy;
  document.body.classList.toggle('busy', busy);
}

// Reads the request fields from the settings; throws ServerError on a bad value.
function requestFields() {
  const fields = {};
  const temperature = ui.temperature.value.trim();
  if (temperature !== '') fields.temperature = Number(temperature);
  const maxTokens = ui.maxTokens.value.trim();
  if (maxTokens !== '') fields.max_tokens = Number(maxTokens);
  const extra = ui.extra.value.trim();
  if (extra) {
    let parsed;
    try {
      parsed = JSON.parse(extra);
    } catch (error) {
      throw new ServerError(`Extra request fields: not valid JSON (${error.message}).`);
    }
    if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) {
      throw new ServerError('Extra request fields: give a JSON object, like {"top_k": 40}.');
    }
    Object.assign(fields, parsed);
  }
  return fields;
}

async function send() {
  const text = ui.prompt.value.trim();
  if (!text || controller) return;
  clearError();
  let fields;
  try {
    fields = requestFields();
  } catch (error) {
    showError(error.message);
    return;
  }
  const system = ui.system.value.trim();
  const messages = [...(system ? [{ role: 'system', content: system }] : []), ...history,
                    { role: 'user', content: text }];
  const body = { model: ui.model.value || undefined, messages, ...fields, stream: true };

  ui.prompt.value = '';
  const asked = addMessage('user', 'You');
  asked.content.textContent = text;
  const reply = addMessage('assistant', ui.model.value || 'assistant');
  reply.root.classList.add('streaming');
  scrollToBottom();

  controller = new AbortController();
  const mine = conversation;
  setBusy(true);
  let content = '';
  let reasoning = '';
  let finish = null;
  let stopped = false;
  let failure = null;
  let timer = null;
  const update = () => {
    if (timer === null) timer = setTimeout(() => { timer = null; render(reply, content, reasoning); }, 40);
  };
  try {
    let response;
    try {
      response = await fetch('v1/chat/completions', {
        method: 'POST', headers: headers(), body: JSON.stringify(body), signal: controller.signal,
      });
    } catch (error) {
      throw error.name === 'AbortError' ? error : networkError(error);
    }
    if (!response.ok) throw await errorOf(response);
    for await (const data of events(response.body)) {
      if (data === '[DONE]') break;
      const chunk = JSON.parse(data);
      if (chunk.error) throw new ServerError(chunk.error.message || JSON.stringify(chunk.error));
      const choice = (chunk.choices || [])[0];
      if (!choice) continue;
      const delta = choice.delta || {};
      if (delta.content) content += delta.content;
      if (delta.reasoning_content) reasoning += delta.reasoning_content;
      if (choice.finish_reason) finish = choice.finish_reason;
      update();
    }
  } catch (error) {
    if (error.name === 'AbortError') stopped = true;
    else failure = error instanceof ServerError ? error : networkError(error);
  } finally {
    controller = null;
    clearTimeout(timer);
    setBusy(false);
  }

  render(reply, content, reasoning);
  reply.root.classList.remove('streaming');
  if (stopped) reply.note.textContent = 'Stopped.';
  else if (finish === 'length') reply.note.textContent = 'Stopped at the token limit.';
  if (failure) {
    showError(failure.message);
    reply.root.classList.add('failed');
    reply.note.textContent = failure.message;
  }
  if (mine !== conversation) return;
  if (content || reasoning) {
    history.push({ role: 'user', content: text }, { role: 'assistant', content });
  } else if (failure || stopped) {  // nothing came back: the question is not part of the conversation
    asked.root.classList.add('unanswered');
    if (!ui.prompt.value) ui.prompt.value = text;
  }
  ui.prompt.focus();
}

// The `data` of each server-sent event in a response body (": ping" comments skipped).
async function* events(body) {
  const reader = body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = '';
  let data = [];
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += value;
      const lines = buffer.split('\n');
      buffer = lines.pop();
      for (let line of lines) {
        if (line.endsWith('\r')) line = line.slice(0, -1);
        if (line === '') {
          if (data.length) yield data.join('\n');
          data = [];
        } else if (line.startsWith('data:')) {
          data.push(line.slice(line.startsWith('data: ') ? 6 : 5));
        }
      }
    }
    if (data.length) yield data.join('\n');
  } finally {
    reader.cancel().catch(() => {});
  }
}

// ---- controls ----

ui.composer.addEventListener('submit', (event) => {
  event.preventDefault();
  send();
});
ui.prompt.addEventListener('keydown', (event) => {
  if (event.key === 'Enter' && !event.shiftKey && !event.isComposing) {
    event.preventDefault();
    send();
  }
});
ui.stop.addEventListener('click', () => {
  if (controller) controller.abort();
});
ui.newChat.addEventListener('click', () => {
  if (controller) controller.abort();
  history = [];
  conversation++;
  ui.messages.replaceChildren(ui.empty);
  ui.empty.hidden = false;
  clearError();
  ui.prompt.focus();
});

loadModels();
ui.prompt.focus();
