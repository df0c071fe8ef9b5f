// One conversation's messages on the page: how each is drawn (Markdown, thinking folded, tool
// calls, attachments, figures) and how an answer streams into it.

import { renderMarkdown } from './markdown.js';

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === 'class') node.className = v;
    else if (k === 'text') node.textContent = v;
    else if (k.startsWith('on')) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v);
  }
  node.append(...children.filter((c) => c != null));
  return node;
}
export { el };

/** "42 tokens in, 17 out, 12.3 tokens/s": the figures of a finished answer. */
function figures(stats) {
  if (!stats) return '';
  const parts = [];
  if (stats.prompt_eval_count != null) parts.push(`${stats.prompt_eval_count} tokens in`);
  if (stats.eval_count != null) parts.push(`${stats.eval_count} out`);
  if (stats.eval_count && stats.eval_duration) {
    parts.push(`${(stats.eval_count / (stats.eval_duration / 1e9)).toFixed(1)} tokens/s`);
  }
  return parts.join(', ');
}

function attachmentsOf(msg) {
  if (!msg.attachments?.length) return null;
  const list = el('ul', { class: 'thumbs', 'aria-label': 'Attachments' });
  for (const a of msg.attachments) {
    const item = a.type.startsWith('image/')
      ? el('img', { src: a.url, alt: a.name })
      : el('audio', { src: a.url, controls: '', 'aria-label': a.name });
    list.append(el('li', {}, item));
  }
  return list;
}

function toolCalls(msg) {
  if (!msg.tool_calls?.length) return null;
  const box = el('div', { class: 'tools' });
  for (const call of msg.tool_calls) {
    const f = call.function ?? {};
    box.append(el('div', { class: 'tool-call' },
      el('span', { class: 'tool-label', text: 'Tool call' }),
      el('code', { text: `${f.name ?? '?'}(${JSON.stringify(f.arguments ?? {})})` })));
  }
  return box;
}

/**
 * The element of message `index` of `conv`. `actions` has the handlers of its buttons: edit (a
 * question), regenerate (the last answer), copy.
 */
export function messageView(msg, index, last, actions) {
  const who = msg.role === 'user' ? 'You' : 'Assistant';
  const body = el('div', { class: 'body' });
  const view = el('article', { class: `msg ${msg.role}`, 'data-index': String(index), 'aria-label': `${who} said` },
    el('h3', { class: 'who', text: who }), body);
  fill(view, msg);
  const buttons = el('div', { class: 'actions' });
  if (msg.role === 'user') {
    buttons.append(el('button', { type: 'button', class: 'edit', text: 'Edit', onclick: () => actions.edit(index, view) }));
  } else {
    buttons.append(el('button', { type: 'button', class: 'copy-answer', text: 'Copy', onclick: () => actions.copy(msg) }));
    if (last) buttons.append(el('button', { type: 'button', class: 'regenerate', text: 'Regenerate', onclick: () => actions.regenerate() }));
  }
  view.append(buttons);
  return view;
}

/** Draws `msg`'s contents into its element again (each streamed piece calls this). */
export function fill(view, msg) {
  const body = view.querySelector('.body');
  const open = body.querySelector('details.thinking')?.open ?? false;
  body.replaceChildren();
  if (msg.thinking) {
    const details = el('details', { class: 'thinking' }, el('summary', { text: msg.content ? 'Thought' : 'Thinking…' }),
      el('div', { class: 'thought' }, renderMarkdown(msg.thinking)));
    details.open = open;
    body.append(details);
  }
  body.append(attachmentsOf(msg) ?? '');
  if (msg.role === 'user') body.append(el('p', { class: 'plain', text: msg.content }));
  else body.append(el('div', { class: 'markdown' }, renderMarkdown(msg.content ?? '')));
  body.append(toolCalls(msg) ?? '');
  if (msg.error) body.append(el('p', { class: 'error', role: 'alert', text: msg.error }));
  if (msg.stopped) body.append(el('p', { class: 'note', text: 'Stopped.' }));
  const text = figures(msg.stats);
  if (text) body.append(el('p', { class: 'figures', text }));
}

/** An inline editor for question `index`: resolves to the new text, or null when cancelled. */
export function editInPlace(view, text) {
  return new Promise((resolve) => {
    const body = view.querySelector('.body');
    const saved = [...body.childNodes];
    const area = el('textarea', { class: 'editor', rows: '4', 'aria-label': 'Edit the message' });
    area.value = text;
    const done = (value) => { body.replaceChildren(...saved); resolve(value); };
    const row = el('div', { class: 'row' },
      el('button', { type: 'button', class: 'primary save-edit', text: 'Save and send', onclick: () => done(area.value) }),
      el('button', { type: 'button', text: 'Cancel', onclick: () => done(null) }));
    area.addEventListener('keydown', (e) => {
      if (e.key === 'Escape') { e.preventDefault(); done(null); }
      if (e.key === 'Enter' && !e.shiftKey && !e.isComposing) { e.preventDefault(); done(area.value); }
    });
    body.replaceChildren(area, row);
    area.focus();
  });
}

/** The messages sent for `conv`: its system prompt, then each message as the API takes it. */
export function requestMessages(conv) {
  const out = [];
  if (conv.system?.trim()) out.push({ role: 'system', content: conv.system });
  for (const m of conv.messages) {
    const msg = { role: m.role, content: m.content ?? '' };
    if (m.attachments?.length) msg.images = m.attachments.map((a) => a.url.slice(a.url.indexOf(',') + 1));
    if (m.tool_calls?.length) msg.tool_calls = m.tool_calls;
    out.push(msg);
  }
  return out;
}
