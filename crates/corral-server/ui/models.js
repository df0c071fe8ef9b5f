// The models dialog: what is installed (with delete), what is loaded (`ps`), and pulling a new
// model with a progress bar.

import { api, humanBytes, relativeTime } from './api.js';
import { el } from './chat.js';

const $ = (id) => document.getElementById(id);

/** Where a loaded model's memory is, as `ollama ps` says it. */
function processor(m) {
  if (!m.size_vram) return '100% CPU';
  if (m.size_vram >= m.size) return '100% GPU';
  const cpu = Math.round(((m.size - m.size_vram) / m.size) * 100);
  return `${cpu}%/${100 - cpu}% CPU/GPU`;
}

function until(m) {
  const t = new Date(m.expires_at);
  return t.getFullYear() - new Date().getFullYear() > 100 ? 'Forever' : relativeTime(t);
}

export function modelsDialog({ onChange, onError }) {
  const dialog = $('models-dialog');
  let timer = null;
  let pulling = null;

  async function refresh() {
    try {
      const [tags, ps] = await Promise.all([api.tags(), api.ps()]);
      const installed = $('installed').tBodies[0];
      installed.replaceChildren(...tags.models.map((m) => el('tr', {},
        el('td', { text: m.name }),
        el('td', { text: humanBytes(m.size) }),
        el('td', { text: relativeTime(m.modified_at) }),
        el('td', {}, el('button', {
          type: 'button', class: 'danger delete-model', 'aria-label': `Delete ${m.name}`, text: 'Delete',
          onclick: () => remove(m.name),
        })))));
      const loaded = $('loaded').tBodies[0];
      loaded.replaceChildren(...(ps.models.length ? ps.models.map((m) => el('tr', {},
        el('td', { text: m.name }), el('td', { text: humanBytes(m.size) }),
        el('td', { text: processor(m) }), el('td', { text: until(m) })))
        : [el('tr', {}, el('td', { colspan: '4', class: 'note', text: 'No model is loaded.' }))]));
    } catch (e) {
      onError(e);
    }
  }

  async function remove(name) {
    if (!confirm(`Delete ${name}? Its files are removed from this server.`)) return;
    try {
      await api.remove(name);
      await refresh();
      onChange();
    } catch (e) {
      onError(e);
    }
  }

  async function pull(name) {
    const bar = $('pull-progress');
    const status = $('pull-status');
    pulling = new AbortController();
    $('pull').disabled = true;
    bar.hidden = false;
    bar.removeAttribute('value');
    status.textContent = `pulling ${name}…`;
    try {
      for await (const part of api.pull(name, pulling.signal)) {
        if (part.total) {
          bar.max = part.total;
          bar.value = part.completed ?? 0;
          status.textContent = `${part.status} ${humanBytes(part.completed ?? 0)} / ${humanBytes(part.total)}`;
        } else {
          status.textContent = part.status;
        }
      }
      bar.max = 1;
      bar.value = 1;
      status.textContent = `${name}: success`;
      await refresh();
      onChange(name);
    } catch (e) {
      status.textContent = `${name}: ${e.message}`;
      bar.hidden = true;
      onError(e, true);
    } finally {
      $('pull').disabled = false;
      pulling = null;
    }
  }

  $('pull-form').addEventListener('submit', (e) => {
    e.preventDefault();
    const name = $('pull-name').value.trim();
    if (name && !pulling) pull(name);
  });
  $('close-models').addEventListener('click', () => dialog.close());
  dialog.addEventListener('close', () => { clearInterval(timer); timer = null; });

  return {
    open() {
      dialog.showModal();
      refresh();
      timer ??= setInterval(refresh, 5000);
    },
  };
}
