// The chat page: conversations (kept in the browser), the model picker, the composer, and the
// streaming of answers. Everything it shows comes from the server's own API.

import { api, NeedKey, setKey } from './api.js';
import { el, messageView, fill, editInPlace, requestMessages } from './chat.js';
import { modelsDialog } from './models.js';
import * as store from './store.js';

const $ = (id) => document.getElementById(id);

const state = {
  conversations: store.load(),
  current: null,
  models: [],
  capabilities: [],
  attachments: [],
  answering: null, // the AbortController of the answer being streamed
};

function status(text, isError = false) {
  $('status').textContent = text;
  $('status').classList.toggle('error', isError);
}

function persist() {
  const warning = store.save(state.conversations);
  if (warning) status(warning, true);
}

function fail(e, quiet = false) {
  if (e instanceof NeedKey) {
    askKey();
    return;
  }
  if (!quiet) status(e.message, true);
  console.warn(e);
}

// --- API key -------------------------------------------------------------------------------

function askKey(message = '') {
  const dialog = $('key-dialog');
  $('key-error').textContent = message;
  if (!dialog.open) dialog.showModal();
  $('key').focus();
}

$('key-form').addEventListener('submit', async (e) => {
  e.preventDefault();
  setKey($('key').value.trim());
  try {
    await api.tags();
    $('key-dialog').close();
    await loadModels();
  } catch (err) {
    askKey(err instanceof NeedKey ? 'The server did not accept this key.' : err.message);
  }
});

// --- Models --------------------------------------------------------------------------------

async function loadModels(select) {
  try {
    const tags = await api.tags();
    state.models = tags.models.map((m) => m.name);
  } catch (e) {
    fail(e);
    return;
  }
  const picker = $('model');
  picker.replaceChildren(...state.models.map((name) => el('option', { value: name, text: name })));
  if (!state.models.length) {
    picker.append(el('option', { value: '', text: 'No models: pull one from Models' }));
  }
  const want = select ?? state.current?.model;
  picker.value = state.models.includes(want) ? want : (state.models[0] ?? '');
  await modelChosen();
}

async function modelChosen() {
  const model = $('model').value;
  if (state.current && model && state.current.model !== model) {
    state.current.model = model;
    persist();
  }
  state.capabilities = [];
  if (model) {
    try {
      state.capabilities = (await api.show(model)).capabilities ?? [];
    } catch (e) {
      fail(e);
    }
  }
  const vision = state.capabilities.includes('vision');
  const audio = state.capabilities.includes('audio');
  $('attach').hidden = !(vision || audio);
  $('file').accept = [vision ? 'image/*' : '', audio ? 'audio/*' : ''].filter(Boolean).join(',');
  $('attach').textContent = vision && audio ? 'Attach image or sound' : vision ? 'Attach image' : 'Attach sound';
  $('think-label').hidden = !state.capabilities.includes('thinking');
}

$('model').addEventListener('change', modelChosen);

const models = modelsDialog({ onChange: (pulled) => loadModels(pulled), onError: fail });
$('open-models').addEventListener('click', () => models.open());

// --- Conversations -------------------------------------------------------------------------

function listConversations() {
  const query = $('search').value;
  const items = state.conversations
    .filter((c) => store.matches(c, query))
    .sort((a, b) => b.updated.localeCompare(a.updated))
    .map((c) => {
      const open = el('button', { type: 'button', class: 'open', text: c.title, onclick: () => openConversation(c) });
      if (c === state.current) open.setAttribute('aria-current', 'true');
      return el('li', { class: c === state.current ? 'current' : '' }, open,
        el('button', { type: 'button', class: 'rename', 'aria-label': `Rename ${c.title}`, text: 'Rename', onclick: () => rename(c) }),
        el('button', { type: 'button', class: 'delete', 'aria-label': `Delete ${c.title}`, text: 'Delete', onclick: () => removeConversation(c) }));
    });
  $('conversations').replaceChildren(...items);
}

function rename(conv) {
  const title = prompt('Name of this conversation', conv.title);
  if (title?.trim()) {
    conv.title = title.trim();
    persist();
    listConversations();
  }
}

function removeConversation(conv) {
  if (!confirm(`Delete the conversation "${conv.title}"?`)) return;
  state.conversations = state.conversations.filter((c) => c !== conv);
  persist();
  if (conv === state.current) newConversation();
  listConversations();
}

function newConversation() {
  stop();
  state.current = null;
  $('messages').replaceChildren();
  showSettings();
  listConversations();
  $('prompt').focus();
}

function openConversation(conv) {
  stop();
  state.current = conv;
  if (conv.model && state.models.includes(conv.model)) {
    $('model').value = conv.model;
    modelChosen();
  }
  showSettings();
  drawMessages();
  listConversations();
  document.body.classList.remove('sidebar-open');
}

/** The current conversation, created on the first message. */
function current() {
  if (!state.current) {
    state.current = store.create($('model').value);
    state.conversations.push(state.current);
    readSettings();
  }
  return state.current;
}

function drawMessages() {
  const conv = state.current;
  const list = conv ? conv.messages.map((m, i) => messageView(m, i, i === conv.messages.length - 1, actions)) : [];
  $('messages').replaceChildren(...list);
  $('messages').scrollTop = $('messages').scrollHeight;
}

const actions = {
  async edit(index, view) {
    if (state.answering) return;
    const text = await editInPlace(view, state.current.messages[index].content);
    if (text == null) return;
    state.current.messages = state.current.messages.slice(0, index + 1);
    state.current.messages[index] = { ...state.current.messages[index], content: text };
    drawMessages();
    answer();
  },
  regenerate() {
    if (state.answering) return;
    const msgs = state.current.messages;
    if (msgs.at(-1)?.role === 'assistant') msgs.pop();
    drawMessages();
    answer();
  },
  copy(msg) {
    navigator.clipboard?.writeText(msg.content ?? '').then(() => status('Answer copied.'), () => status('Could not copy.', true));
  },
};

$('new-chat').addEventListener('click', newConversation);
$('search').addEventListener('input', listConversations);
$('open-sidebar').addEventListener('click', () => document.body.classList.add('sidebar-open'));
$('close-sidebar').addEventListener('click', () => document.body.classList.remove('sidebar-open'));
$('export-json').addEventListener('click', () => {
  store.download('corral-conversations.json', 'application/json', JSON.stringify(state.conversations, null, 2));
});
$('export-md').addEventListener('click', () => {
  const conv = state.current;
  if (!conv) return status('Open a conversation to export it.', true);
  store.download(`${conv.title.replace(/[^\w.-]+/g, '_').slice(0, 60) || 'conversation'}.md`, 'text/markdown', store.toMarkdown(conv));
});

// --- Settings of a conversation ------------------------------------------------------------

const OPTIONS = ['temperature', 'num_ctx', 'seed', 'num_predict'];

function showSettings() {
  const conv = state.current;
  $('system').value = conv?.system ?? '';
  for (const name of OPTIONS) $(`opt-${name}`).value = conv?.options?.[name] ?? '';
  $('opt-think').checked = conv?.think ?? false;
}

function readSettings() {
  const conv = state.current;
  if (!conv) return;
  conv.system = $('system').value;
  conv.options = {};
  for (const name of OPTIONS) {
    const v = $(`opt-${name}`).value;
    if (v !== '' && Number.isFinite(Number(v))) conv.options[name] = Number(v);
  }
  conv.think = $('opt-think').checked;
  persist();
}

for (const id of ['system', 'opt-think', ...OPTIONS.map((o) => `opt-${o}`)]) {
  $(id).addEventListener('change', readSettings);
}
$('toggle-settings').addEventListener('click', () => {
  const open = $('settings').hidden;
  $('settings').hidden = !open;
  $('toggle-settings').setAttribute('aria-expanded', String(open));
});

// --- Attachments ---------------------------------------------------------------------------

function drawAttachments() {
  $('attachments').replaceChildren(...state.attachments.map((a, i) => el('li', {},
    a.type.startsWith('image/') ? el('img', { src: a.url, alt: a.name }) : el('span', { text: a.name }),
    el('button', { type: 'button', class: 'remove-attachment', 'aria-label': `Remove ${a.name}`, text: '×',
      onclick: () => { state.attachments.splice(i, 1); drawAttachments(); } }))));
}

function addFiles(files) {
  for (const file of files) {
    const kind = file.type.split('/')[0];
    const allowed = (kind === 'image' && state.capabilities.includes('vision')) || (kind === 'audio' && state.capabilities.includes('audio'));
    if (!allowed) {
      status(`${$('model').value || 'This model'} cannot read ${file.name} (${file.type || 'unknown type'}).`, true);
      continue;
    }
    const reader = new FileReader();
    reader.onload = () => {
      state.attachments.push({ name: file.name, type: file.type, url: reader.result });
      drawAttachments();
    };
    reader.readAsDataURL(file);
  }
}

$('attach').addEventListener('click', () => $('file').click());
$('file').addEventListener('change', () => { addFiles($('file').files); $('file').value = ''; });
$('prompt').addEventListener('paste', (e) => {
  if (e.clipboardData?.files?.length) {
    e.preventDefault();
    addFiles(e.clipboardData.files);
  }
});
$('main').addEventListener('dragover', (e) => { e.preventDefault(); $('main').classList.add('dropping'); });
$('main').addEventListener('dragleave', () => $('main').classList.remove('dropping'));
$('main').addEventListener('drop', (e) => {
  e.preventDefault();
  $('main').classList.remove('dropping');
  addFiles(e.dataTransfer?.files ?? []);
});

// --- Sending and answering -----------------------------------------------------------------

function busy(on) {
  $('send').hidden = on;
  $('stop').hidden = !on;
}

function stop() {
  state.answering?.abort();
}

/** Streams the model's answer to the current conversation into a new message. */
async function answer() {
  const conv = current();
  const model = $('model').value;
  if (!model) return status('Pick a model first (or pull one from Models).', true);
  const msg = { role: 'assistant', content: '', thinking: '' };
  const body = { model, messages: requestMessages(conv), options: conv.options ?? {} };
  if (state.capabilities.includes('thinking')) body.think = Boolean(conv.think);
  conv.messages.push(msg);
  drawMessages();
  const view = $('messages').lastElementChild;
  const controller = new AbortController();
  state.answering = controller;
  busy(true);
  status(`${model} is answering…`);
  let pending = false;
  const redraw = () => {
    if (pending) return;
    pending = true;
    requestAnimationFrame(() => {
      pending = false;
      const stick = $('messages').scrollHeight - $('messages').scrollTop - $('messages').clientHeight < 40;
      fill(view, msg);
      if (stick) $('messages').scrollTop = $('messages').scrollHeight;
    });
  };
  try {
    for await (const part of api.chat(body, controller.signal)) {
      msg.content += part.message?.content ?? '';
      msg.thinking += part.message?.thinking ?? '';
      if (part.message?.tool_calls?.length) msg.tool_calls = [...(msg.tool_calls ?? []), ...part.message.tool_calls];
      if (part.done) {
        msg.stats = { prompt_eval_count: part.prompt_eval_count, eval_count: part.eval_count, eval_duration: part.eval_duration };
      }
      redraw();
    }
    status('');
  } catch (e) {
    if (controller.signal.aborted) {
      msg.stopped = true;
      status('Stopped.');
    } else if (e instanceof NeedKey) {
      conv.messages.pop();
      fail(e);
    } else {
      msg.error = e.message;
      status(e.message, true);
    }
  } finally {
    state.answering = null;
    busy(false);
    if (!msg.thinking) delete msg.thinking;
    conv.updated = new Date().toISOString();
    persist();
    drawMessages();
    listConversations();
  }
}

async function send() {
  const text = $('prompt').value;
  if (state.answering || (!text.trim() && !state.attachments.length)) return;
  const conv = current();
  const msg = { role: 'user', content: text };
  if (state.attachments.length) msg.attachments = state.attachments;
  if (!conv.messages.length) conv.title = text.trim().slice(0, 48) || 'Attachment';
  conv.messages.push(msg);
  state.attachments = [];
  drawAttachments();
  $('prompt').value = '';
  await answer();
}

$('composer').addEventListener('submit', (e) => { e.preventDefault(); send(); });
$('stop').addEventListener('click', stop);
$('prompt').addEventListener('keydown', (e) => {
  if (e.key === 'Enter' && !e.shiftKey && !e.isComposing) {
    e.preventDefault();
    send();
  }
});
document.addEventListener('keydown', (e) => {
  if (e.key === 'Escape' && state.answering) {
    e.preventDefault();
    stop();
  }
});

// --- Start ---------------------------------------------------------------------------------

listConversations();
loadModels().then(() => $('prompt').focus());
