// Conversations, kept in this browser's localStorage (nothing is kept on the server), and their
// export as JSON or Markdown.

const ITEM = 'corral.conversations';

function id() {
  // crypto.randomUUID needs a secure context; a page reached over plain HTTP on the LAN is not one.
  const bytes = crypto.getRandomValues(new Uint8Array(12));
  return Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('');
}

export function load() {
  try {
    const list = JSON.parse(localStorage.getItem(ITEM) ?? '[]');
    return Array.isArray(list) ? list.filter((c) => c && Array.isArray(c.messages)) : [];
  } catch {
    return [];
  }
}

/**
 * Saves every conversation. When the browser's quota is full, attachments are dropped from the
 * saved copy (the open page keeps them) and the returned text says so.
 */
export function save(list) {
  try {
    localStorage.setItem(ITEM, JSON.stringify(list));
    return '';
  } catch {
    const light = list.map((c) => ({ ...c, messages: c.messages.map(({ attachments, ...m }) => m) }));
    try {
      localStorage.setItem(ITEM, JSON.stringify(light));
      return 'The browser\'s storage is full: attachments of saved conversations were not kept.';
    } catch {
      return 'The browser\'s storage is full: conversations were not saved.';
    }
  }
}

export function create(model) {
  const now = new Date().toISOString();
  return { id: id(), title: 'New chat', model, system: '', options: {}, think: false, messages: [], created: now, updated: now };
}

/** Whether `conv` contains `query` in its title or any message. */
export function matches(conv, query) {
  const q = query.trim().toLowerCase();
  if (!q) return true;
  return conv.title.toLowerCase().includes(q) || conv.messages.some((m) => (m.content ?? '').toLowerCase().includes(q));
}

export function toMarkdown(conv) {
  const parts = [`# ${conv.title}`, '', `Model: ${conv.model}`, ''];
  if (conv.system) parts.push('## System', '', conv.system, '');
  for (const m of conv.messages) {
    parts.push(`## ${m.role === 'user' ? 'User' : 'Assistant'}`, '');
    if (m.thinking) parts.push('<details><summary>Thinking</summary>', '', m.thinking, '', '</details>', '');
    if (m.content) parts.push(m.content, '');
    for (const call of m.tool_calls ?? []) {
      parts.push('```json', JSON.stringify(call.function ?? call, null, 2), '```', '');
    }
  }
  return parts.join('\n');
}

/** Offers `text` as a file download named `name`. */
export function download(name, type, text) {
  const url = URL.createObjectURL(new Blob([text], { type }));
  const a = document.createElement('a');
  a.href = url;
  a.download = name;
  document.body.append(a);
  a.click();
  a.remove();
  // Revoked once the browser surely has the bytes (a download reads the blob after the click).
  setTimeout(() => URL.revokeObjectURL(url), 60000);
}
