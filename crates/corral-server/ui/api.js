// The server's API as the page uses it: the same /api/* routes as every other client, with the
// API key (when the server asks for one) kept in this browser's storage.

const KEY_ITEM = 'corral.key';

/** The server asked for a key (401): the page shows the key field and tries again. */
export class NeedKey extends Error {}

export function setKey(key) {
  if (key) localStorage.setItem(KEY_ITEM, key);
  else localStorage.removeItem(KEY_ITEM);
}

function headers(json) {
  const h = {};
  if (json) h['Content-Type'] = 'application/json';
  const key = localStorage.getItem(KEY_ITEM);
  if (key) h['Authorization'] = `Bearer ${key}`;
  return h;
}

async function failure(res) {
  if (res.status === 401) return new NeedKey('this server asks for an API key');
  let text = await res.text();
  try {
    text = JSON.parse(text).error ?? text;
    if (typeof text === 'object') text = text.message ?? JSON.stringify(text);
  } catch { /* not JSON: the text itself */ }
  return new Error(`${res.status}: ${text}`);
}

async function call(method, path, body) {
  const res = await fetch(path, {
    method,
    headers: headers(body !== undefined),
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  if (!res.ok) throw await failure(res);
  const type = res.headers.get('content-type') ?? '';
  return type.includes('json') ? res.json() : res.text();
}

/** Each JSON line of a streamed answer, as it arrives; an `error` line ends it with that error. */
async function* stream(path, body, signal) {
  const res = await fetch(path, { method: 'POST', headers: headers(true), body: JSON.stringify(body), signal });
  if (!res.ok) throw await failure(res);
  const reader = res.body.getReader();
  const decoder = new TextDecoder();
  let pending = '';
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    pending += decoder.decode(value, { stream: true });
    let end;
    while ((end = pending.indexOf('\n')) >= 0) {
      const line = pending.slice(0, end).trim();
      pending = pending.slice(end + 1);
      if (!line) continue;
      const part = JSON.parse(line);
      if (part.error) throw new Error(part.error);
      yield part;
    }
  }
  if (pending.trim()) {
    const part = JSON.parse(pending);
    if (part.error) throw new Error(part.error);
    yield part;
  }
}

export const api = {
  version: () => call('GET', '/api/version'),
  tags: () => call('GET', '/api/tags'),
  ps: () => call('GET', '/api/ps'),
  show: (model) => call('POST', '/api/show', { model }),
  remove: (model) => call('DELETE', '/api/delete', { model }),
  pull: (model, signal) => stream('/api/pull', { model, stream: true }, signal),
  chat: (body, signal) => stream('/api/chat', { ...body, stream: true }, signal),
};

/** Decimal sizes as Ollama prints them: 1.2 GB, 270 MB. */
export function humanBytes(n) {
  const units = [[1e12, 'TB'], [1e9, 'GB'], [1e6, 'MB'], [1e3, 'KB']];
  for (const [scale, unit] of units) {
    if (n >= scale) {
      const v = n / scale;
      return `${v >= 10 || Number.isInteger(v) ? Math.floor(v) : v.toFixed(1)} ${unit}`;
    }
  }
  return `${n} B`;
}

/** "3 minutes ago", "in 4 minutes". */
export function relativeTime(date) {
  const seconds = Math.round((new Date(date).getTime() - Date.now()) / 1000);
  const steps = [[60, 'second'], [60, 'minute'], [24, 'hour'], [365, 'day'], [Infinity, 'year']];
  let value = seconds;
  for (const [size, unit] of steps) {
    if (Math.abs(value) < size) return new Intl.RelativeTimeFormat('en', { numeric: 'auto' }).format(value, unit);
    value = Math.round(value / size);
  }
  return '';
}
