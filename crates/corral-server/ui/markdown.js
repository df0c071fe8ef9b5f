// markdown.js: a small Markdown renderer and code highlighter for the chat page.
//
// Model output is untrusted and arrives in pieces, so it is re-rendered on every
// streamed chunk. Everything here builds DOM nodes (createElement / createTextNode /
// setAttribute) instead of HTML strings: text can never turn into markup, which keeps
// the page safe under its strict Content-Security-Policy without a sanitizer. Every
// scanner is linear (no backtracking-prone regexes), incomplete input (an open code
// fence, a lone `**`) renders sensibly, and deep nesting is capped.

const MAX_NEST = 8; // block nesting (lists, quotes) before lines fall back to paragraphs
const MAX_INLINE = 20; // emphasis nesting before delimiters stay literal
const WS = /\s/, PUNCT = /[\p{P}\p{S}]/u, ALNUM = /[\p{L}\p{N}]/u, ASCII_P = /[!-\/:-@\[-`{-~]/;
const SAFE_URL = /^(?:https?|mailto):/i;
const FENCE = /^ {0,3}(`{3,}|~{3,})[ \t]*([^\s`]*)/, CLOSE = /^ {0,3}(`{3,}|~{3,})[ \t]*$/;
const HEAD = /^ {0,3}(#{1,6})(?=[ \t]|$)/, QUOTE = /^ {0,3}> ?/, LIST = /^( *)([-*+]|\d{1,9}[.)])(?:[ \t]+|$)/;

function el(tag, cls) {
  const e = document.createElement(tag);
  if (cls) e.setAttribute('class', cls);
  return e;
}
const text = (s) => document.createTextNode(s);
const isWs = (c) => c === undefined || WS.test(c);
const isP = (c) => c !== undefined && PUNCT.test(c);
const isDigit = (c) => c >= '0' && c <= '9';
const indentOf = (l) => l.length - l.trimStart().length;

export function renderMarkdown(src) {
  const frag = document.createDocumentFragment();
  const lines = String(src ?? '').replace(/\r\n?/g, '\n').split('\n')
    .map((l) => (l[0] === '\t' || l[0] === ' ' ? l.replace(/^[ \t]+/, (m) => m.replace(/\t/g, '    ')) : l));
  blocks(lines, frag, 0);
  return frag;
}

// ---- blocks ----

function openFence(line) {
  const m = FENCE.exec(line);
  return m && !(m[1][0] === '`' && line.indexOf('`', m[0].length) >= 0) ? m : null;
}
function isHr(line) {
  const s = line.replace(/[ \t]/g, '');
  return s.length >= 3 && /^(?:\*+|-+|_+)$/.test(s);
}
function splitRow(line) {
  let s = line.trim();
  if (s[0] === '|') s = s.slice(1);
  if (s.endsWith('|') && !s.endsWith('\\|')) s = s.slice(0, -1);
  const cells = [];
  let cur = '';
  for (let k = 0; k < s.length; k++) {
    if (s[k] === '\\' && s[k + 1] === '|') { cur += '|'; k++; } else if (s[k] === '|') { cells.push(cur.trim()); cur = ''; } else cur += s[k];
  }
  cells.push(cur.trim());
  return cells;
}
function tableStart(lines, i) {
  if (!lines[i].includes('|') || i + 1 >= lines.length || !lines[i + 1].includes('|')) return false;
  const sep = splitRow(lines[i + 1]);
  return sep.every((c) => /^:?-+:?$/.test(c)) && sep.length === splitRow(lines[i]).length;
}
function listInterrupts(line) {
  const m = LIST.exec(line);
  return !!m && m[0].length < line.length && (!isDigit(m[2][0]) || parseInt(m[2], 10) === 1);
}
function startsBlock(lines, i, deep) {
  const l = lines[i];
  return !!openFence(l) || HEAD.test(l) || isHr(l) || tableStart(lines, i) ||
    (!deep && (QUOTE.test(l) || listInterrupts(l)));
}

function blocks(lines, out, depth) {
  const deep = depth >= MAX_NEST;
  let i = 0, m;
  while (i < lines.length) {
    const line = lines[i];
    if (!line.trim()) { i++; continue; }
    if ((m = openFence(line))) {
      const ch = m[1][0], len = m[1].length, ind = indentOf(line), body = [];
      for (i++; i < lines.length; i++) {
        const c = CLOSE.exec(lines[i]);
        if (c && c[1][0] === ch && c[1].length >= len) break;
        body.push(lines[i].slice(Math.min(ind, indentOf(lines[i]))));
      }
      i++; // past the closing fence (or the end, for a fence still streaming)
      out.appendChild(codeBlock(m[2].slice(0, 32), body.join('\n')));
    } else if ((m = HEAD.exec(line))) {
      let t = line.slice(m[0].length).trim(), j = t.length;
      while (j > 0 && t[j - 1] === '#') j--;
      if (j === 0 || t[j - 1] === ' ' || t[j - 1] === '\t') t = t.slice(0, j).trim();
      const h = el('h' + m[1].length);
      h.appendChild(inline(t));
      out.appendChild(h);
      i++;
    } else if (isHr(line)) {
      out.appendChild(el('hr'));
      i++;
    } else if (!deep && QUOTE.test(line)) {
      const inner = [];
      for (; i < lines.length; i++) {
        const l = lines[i], q = QUOTE.exec(l);
        if (q) inner.push(l.slice(q[0].length));
        else if (l.trim() && inner[inner.length - 1].trim() && !startsBlock(lines, i, deep)) inner.push(l);
        else break;
      }
      const bq = el('blockquote');
      blocks(inner, bq, depth + 1);
      out.appendChild(bq);
    } else if (!deep && (m = LIST.exec(line))) {
      i = list(lines, i, m, out, depth);
    } else if (tableStart(lines, i)) {
      i = table(lines, i, out);
    } else {
      const para = [line.trim()];
      for (i++; i < lines.length && lines[i].trim() && !startsBlock(lines, i, deep); i++) para.push(lines[i].trim());
      const p = el('p');
      p.appendChild(inline(para.join('\n')));
      out.appendChild(p);
    }
  }
}

function list(lines, i, m, out, depth) {
  const ordered = isDigit(m[2][0]), base = m[1].length, items = [];
  const ul = el(ordered ? 'ol' : 'ul');
  if (ordered && parseInt(m[2], 10) !== 1) ul.setAttribute('start', String(parseInt(m[2], 10)));
  const sibling = (l) => {
    const lm = LIST.exec(l);
    return lm && lm[1].length < base + 2 && !isHr(l) ? lm : null;
  };
  let loose = false, cur = null;
  while (i < lines.length) {
    const l = lines[i], lm = sibling(l);
    if (lm) {
      if (isDigit(lm[2][0]) !== ordered) break;
      const bare = lm[1].length + lm[2].length, gap = lm[0].length - bare;
      cur = { lines: [l.slice(lm[0].length)], off: gap > 4 || lm[0].length === l.length ? bare + 1 : lm[0].length };
      items.push(cur);
      i++;
    } else if (!l.trim()) {
      let j = i + 1;
      while (j < lines.length && !lines[j].trim()) j++;
      if (j >= lines.length) break;
      const nm = sibling(lines[j]);
      if (!(nm && isDigit(nm[2][0]) === ordered) && indentOf(lines[j]) < base + 2) break;
      loose = true;
      cur.lines.push('');
      i = j;
    } else if (indentOf(l) >= base + 2) {
      cur.lines.push(l.slice(Math.min(indentOf(l), cur.off)));
      i++;
    } else if (cur.lines[cur.lines.length - 1].trim() && !startsBlock(lines, i, false)) {
      cur.lines.push(l); // lazy continuation of the item's paragraph
      i++;
    } else break;
  }
  for (const it of items) {
    const li = el('li'), f = document.createDocumentFragment();
    blocks(it.lines, f, depth + 1);
    if (!loose) {
      for (const c of Array.from(f.childNodes)) {
        if (c.nodeName !== 'P') continue;
        while (c.firstChild) f.insertBefore(c.firstChild, c);
        f.removeChild(c);
      }
    }
    li.appendChild(f);
    ul.appendChild(li);
  }
  out.appendChild(ul);
  return i;
}

function table(lines, i, out) {
  const head = splitRow(lines[i]);
  const aligns = splitRow(lines[i + 1]).map((c) =>
    c.endsWith(':') ? (c[0] === ':' ? 'align-center' : 'align-right') : c[0] === ':' ? 'align-left' : '');
  const row = (cells, tag) => {
    const tr = el('tr');
    head.forEach((_, k) => {
      const td = el(tag, aligns[k]);
      td.appendChild(inline(cells[k] || ''));
      tr.appendChild(td);
    });
    return tr;
  };
  const wrap = el('div', 'table-wrap'), t = el('table'), thead = el('thead'), tbody = el('tbody');
  thead.appendChild(row(head, 'th'));
  for (i += 2; i < lines.length && lines[i].trim() && lines[i].includes('|'); i++) tbody.appendChild(row(splitRow(lines[i]), 'td'));
  t.appendChild(thead);
  if (tbody.firstChild) t.appendChild(tbody);
  wrap.appendChild(t);
  out.appendChild(wrap);
  return i;
}

function codeBlock(lang, code) {
  const box = el('div', 'code'), head = el('div', 'code-head'), label = el('span', 'code-lang');
  const btn = el('button', 'copy'), pre = el('pre'), c = el('code', lang ? 'lang-' + lang : '');
  label.appendChild(text(lang));
  btn.setAttribute('type', 'button');
  btn.setAttribute('aria-label', 'Copy code');
  btn.appendChild(text('Copy'));
  c.appendChild(highlight(code, lang));
  let timer = 0;
  const done = () => {
    btn.textContent = 'Copied';
    clearTimeout(timer);
    timer = setTimeout(() => { btn.textContent = 'Copy'; }, 1500);
  };
  const fallback = () => {
    const sel = window.getSelection(), range = document.createRange();
    range.selectNodeContents(c);
    sel.removeAllRanges();
    sel.addRange(range);
    let ok = false;
    try { ok = document.execCommand('copy'); } catch { ok = false; }
    sel.removeAllRanges();
    if (ok) done();
  };
  btn.addEventListener('click', () => {
    if (navigator.clipboard && navigator.clipboard.writeText) navigator.clipboard.writeText(code).then(done, fallback);
    else fallback();
  });
  head.append(label, btn);
  pre.appendChild(c);
  box.append(head, pre);
  return box;
}

// ---- inline ----
// One left-to-right pass builds a linked list of nodes (text, delimiter runs, finished
// elements); `**`/`*`/`_`/`~~` runs are then paired with a CommonMark-style delimiter
// stack. Unpaired delimiters simply stay as text.

function inline(src) {
  const head = { k: 'txt', s: '', idx: -1, next: null };
  let tail = head, seq = 0, buf = '', floor = 0, i = 0;
  const n = src.length, delims = [], brackets = [];
  const add = (node) => { node.idx = seq++; node.prev = tail; node.next = null; tail.next = node; return (tail = node); };
  const flush = () => { if (buf) { add({ k: 'txt', s: buf }); buf = ''; } };
  const push = (node) => { flush(); return add(node); };
  // Positions of backtick runs by length, so each code span finds its closer in O(1) amortized.
  const runs = new Map(), cursor = new Map();
  for (let p = src.indexOf('`'); p >= 0; p = src.indexOf('`', p)) {
    const s = p;
    while (src[p] === '`') p++;
    if (!runs.has(p - s)) runs.set(p - s, []);
    runs.get(p - s).push(s);
  }
  const closer = (len, from) => {
    const arr = runs.get(len) || [];
    let c = cursor.get(len) || 0;
    while (c < arr.length && arr[c] < from) c++;
    cursor.set(len, c);
    return c < arr.length ? arr[c] : -1;
  };
  while (i < n) {
    const c = src[i];
    if (c === '\\' && ASCII_P.test(src[i + 1] || '')) { buf += src[i + 1]; i += 2; continue; }
    if (c === '\n') { push({ k: 'dom', el: el('br') }); i++; continue; }
    if (c === '`') {
      let e = i;
      while (src[e] === '`') e++;
      const end = closer(e - i, e);
      if (end < 0) { buf += src.slice(i, e); i = e; continue; }
      let body = src.slice(e, end).replace(/\n/g, ' ');
      if (body.length > 1 && body[0] === ' ' && body[body.length - 1] === ' ' && body.trim()) body = body.slice(1, -1);
      const ce = el('code');
      ce.appendChild(text(body));
      push({ k: 'dom', el: ce });
      i = end + (e - i);
      continue;
    }
    if (c === '*' || c === '_' || c === '~') {
      let e = i;
      while (src[e] === c) e++;
      if (c === '~' && e - i !== 2) { buf += src.slice(i, e); i = e; continue; }
      const prev = src[i - 1], next = src[e];
      const lf = !isWs(next) && (!isP(next) || isWs(prev) || isP(prev));
      const rf = !isWs(prev) && (!isP(prev) || isWs(next) || isP(next));
      const d = push({ k: 'delim', ch: c, n: e - i,
        open: c === '_' ? lf && (!rf || isP(prev)) : lf, close: c === '_' ? rf && (!lf || isP(next)) : rf });
      if (d.open || d.close) delims.push(d);
      i = e;
      continue;
    }
    if (c === '[') { brackets.push(push({ k: 'txt', s: '[' })); i++; continue; }
    if (c === ']') {
      const b = brackets.pop(), active = b && brackets.length >= floor;
      if (floor > brackets.length) floor = brackets.length;
      const dest = active && src[i + 1] === '(' ? linkDest(src, i + 2) : null;
      if (!dest || !SAFE_URL.test(dest.url)) { buf += ']'; i++; continue; }
      flush();
      const inner = [];
      while (delims.length && delims[delims.length - 1].idx > b.idx) inner.push(delims.pop());
      pairDelims(inner.reverse());
      const kids = [];
      for (let x = b.next; x; x = x.next) kids.push(x);
      tail = b.prev;
      add({ k: 'el', tag: 'a', href: dest.url, kids, depth: 1 + maxDepth(kids) });
      floor = brackets.length; // no links inside links
      i = dest.end;
      continue;
    }
    if (c === 'h' && brackets.length <= floor && (src.startsWith('https://', i) || src.startsWith('http://', i)) && !ALNUM.test(src[i - 1] || ' ')) {
      let e = i, opens = 0, closes = 0;
      for (; e < n && !WS.test(src[e]) && src[e] !== '<' && src[e] !== '`'; e++) {
        if (src[e] === '(') opens++; else if (src[e] === ')') closes++;
      }
      for (;;) {
        const l = src[e - 1];
        if ('.,:;!?\'"*_~'.includes(l)) e--;
        else if (l === ')' && closes > opens) { closes--; e--; } else break;
      }
      const url = src.slice(i, e);
      if (url.length > url.indexOf('//') + 2) {
        push({ k: 'el', tag: 'a', href: url, kids: [{ k: 'txt', s: url }], depth: 1 });
        i = e;
        continue;
      }
    }
    buf += c;
    i++;
  }
  flush();
  pairDelims(delims);
  return emit(head.next);
}

function linkDest(s, p) {
  while (s[p] === ' ') p++;
  const start = p;
  for (let depth = 0; p < s.length; p++) {
    const c = s[p];
    if (c === '(') depth++;
    else if (c === ')') { if (!depth) break; depth--; } else if (c === '[' || c === ']' || c === '<' || WS.test(c)) break;
  }
  const url = s.slice(start, p);
  while (s[p] === ' ') p++;
  if (s[p] === '"' && p > start + url.length) { // optional "title", ignored
    const q = s.indexOf('"', p + 1);
    if (q < 0) return null;
    for (p = q + 1; s[p] === ' ';) p++;
  }
  return url && s[p] === ')' ? { url, end: p + 1 } : null;
}

const maxDepth = (kids) => kids.reduce((m, k) => Math.max(m, k.depth || 0), 0);

function pairDelims(ds) {
  const stack = [], bottom = { '*': -1, _: -1, '~': -1 };
  for (const d of ds) {
    while (d.close && d.n > 0) {
      const fl = bottom[d.ch];
      let k = stack.length - 1;
      while (k >= 0 && stack[k].idx >= fl && stack[k].ch !== d.ch) k--;
      if (k < 0 || stack[k].idx < fl) { bottom[d.ch] = d.idx; break; }
      const o = stack[k], use = d.ch === '~' || (o.n >= 2 && d.n >= 2) ? 2 : 1;
      const kids = [];
      for (let x = o.next; x !== d; x = x.next) kids.push(x);
      let tag = d.ch === '~' ? 'del' : use === 2 ? 'strong' : 'em', depth = maxDepth(kids) + 1;
      if (depth > MAX_INLINE) { // too deep: keep the delimiters as text
        const s = d.ch.repeat(use);
        kids.unshift({ k: 'txt', s });
        kids.push({ k: 'txt', s });
        tag = null;
        depth--;
      }
      const w = { k: 'el', tag, kids, depth, prev: o, next: d };
      o.next = w;
      d.prev = w;
      o.n -= use;
      d.n -= use;
      stack.length = o.n > 0 ? k + 1 : k;
    }
    if (d.open && d.n > 0) stack.push(d);
  }
}

// Turns the node list into DOM without recursion (nesting depth is unbounded here).
// Adjacent text is joined in a JS string first: appendData on a growing node is quadratic.
function emit(first) {
  const frag = document.createDocumentFragment(), top = [];
  for (let x = first; x; x = x.next) top.push(x);
  const work = [[top, 0, frag]];
  let pend = '', pendTo = frag;
  const flushText = () => { if (pend) pendTo.appendChild(text(pend)); pend = ''; };
  while (work.length) {
    const w = work[work.length - 1];
    if (w[1] >= w[0].length) { flushText(); work.pop(); continue; }
    const node = w[0][w[1]++], parent = w[2];
    if (node.k === 'txt' || node.k === 'delim') {
      if (pendTo !== parent) flushText();
      pendTo = parent;
      pend += node.k === 'txt' ? node.s : node.ch.repeat(node.n);
      continue;
    }
    flushText();
    if (node.k === 'dom') { parent.appendChild(node.el); continue; }
    let target = parent;
    if (node.tag) {
      target = parent.appendChild(el(node.tag));
      if (node.tag === 'a') {
        target.setAttribute('href', node.href);
        target.setAttribute('rel', 'noopener noreferrer');
        target.setAttribute('target', '_blank');
      }
    }
    work.push([node.kids, 0, target]);
  }
  return frag;
}

// ---- highlighting ----

const KW = {
  js: 'async await break case catch class const continue debugger default delete do else export extends finally for from function if import in instanceof let new of return static super switch this throw try typeof var void while with yield null undefined true false',
  ts: 'interface type enum implements private public protected readonly declare namespace abstract as any number string boolean never unknown keyof satisfies',
  py: 'False None True and as assert async await break class continue def del elif else except finally for from global if import in is lambda nonlocal not or pass raise return try while with yield self match case',
  rs: 'as async await break const continue crate dyn else enum extern false fn for if impl in let loop match mod move mut pub ref return self Self static struct super trait true type unsafe use where while Some None Ok Err',
  go: 'break case chan const continue default defer else fallthrough for func go goto if import interface map package range return select struct switch type var nil true false',
  c: 'auto break case char const continue default do double else enum extern float for goto if inline int long register return short signed sizeof static struct switch typedef union unsigned void volatile while NULL bool true false',
  cpp: 'class namespace template typename public private protected virtual override new delete this using nullptr constexpr try catch throw operator friend explicit noexcept std',
  java: 'abstract boolean break byte case catch char class continue default do double else enum extends final finally float for if implements import instanceof int interface long new package private protected public return short static super switch synchronized this throw throws try void volatile while null true false var record',
  sh: 'if then else elif fi for while until do done case esac function in return local export echo exit set unset source alias readonly shift cd',
  sql: 'select from where insert into values update set delete create table drop alter add index primary key foreign references join left right inner outer on group by order having limit offset as and or not null is in like between distinct union all case when then else end exists default unique',
  rb: 'def end if elsif else unless while until do class module return yield nil true false self require begin rescue ensure',
  lua: 'and break do else elseif end false for function goto if in local nil not or repeat return then true until while',
  any: 'if else for while do return function fn def func class struct let const var import from export new true false null nil None self this public private static void int',
};
const LANGS = {};
function lang(names, words, opts) {
  const cfg = { line: ['//'], block: true, q: '\'"`', ...opts, kw: new Set(words.split(' ')) };
  for (const name of names.split(' ')) LANGS[name] = cfg;
}
lang('javascript js jsx mjs cjs', KW.js);
lang('typescript ts tsx', KW.js + ' ' + KW.ts);
lang('python py', KW.py, { line: ['#'], block: false, q: '\'"', triple: true, hashAny: true });
lang('rust rs', KW.rs, { q: '"\'', rustChar: true });
lang('go golang', KW.go);
lang('c h', KW.c, { q: '\'"' });
lang('cpp c++ cc cxx hpp', KW.c + ' ' + KW.cpp, { q: '\'"' });
lang('java', KW.java, { q: '\'"' });
lang('sh bash shell zsh console', KW.sh, { line: ['#'], block: false });
lang('json jsonc', 'true false null', { line: [], block: false, q: '"' });
lang('sql', KW.sql, { line: ['--'], block: true, ci: true });
lang('ruby rb', KW.rb, { line: ['#'], block: false });
lang('yaml yml toml', 'true false null yes no', { line: ['#'], block: false });
lang('lua', KW.lua, { line: ['--'], block: false, q: '\'"' });
const GENERIC = { line: ['//', '#'], block: true, q: '\'"`', kw: new Set(KW.any.split(' ')) };
const PLAIN = new Set(['', 'text', 'txt', 'plain', 'plaintext', 'md', 'markdown', 'output', 'log']);
const isIdStart = (c) => (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c === '_' || c === '$';
const isId = (c) => isIdStart(c) || isDigit(c);

export function highlight(code, language) {
  const frag = document.createDocumentFragment(), src = String(code ?? ''), key = String(language || '').toLowerCase();
  if (PLAIN.has(key)) { frag.appendChild(text(src)); return frag; }
  const L = LANGS[key] || GENERIC, n = src.length;
  let plain = '', i = 0;
  const emitTok = (cls, s) => {
    if (plain) { frag.appendChild(text(plain)); plain = ''; }
    const sp = el('span', 'tok-' + cls);
    sp.appendChild(text(s));
    frag.appendChild(sp);
  };
  while (i < n) {
    const c = src[i];
    let j;
    if (L.line.some((p) => src.startsWith(p, i)) && (c !== '#' || L.hashAny || i === 0 || WS.test(src[i - 1]))) {
      j = src.indexOf('\n', i);
      emitTok('com', src.slice(i, (j = j < 0 ? n : j)));
    } else if (L.block && c === '/' && src[i + 1] === '*') {
      j = src.indexOf('*/', i + 2);
      emitTok('com', src.slice(i, (j = j < 0 ? n : j + 2)));
    } else if (L.q.includes(c) && !(L.rustChar && c === "'" && src[i + 2] !== "'" && src[i + 1] !== '\\')) {
      if (L.triple && src.startsWith(c + c + c, i)) {
        j = src.indexOf(c + c + c, i + 3);
        j = j < 0 ? n : j + 3;
      } else {
        for (j = i + 1; j < n; j++) {
          if (src[j] === '\\') j++;
          else if (src[j] === c) { j++; break; } else if (src[j] === '\n' && c !== '`') break;
        }
        j = Math.min(j, n);
      }
      emitTok('str', src.slice(i, j));
    } else if (isDigit(c)) {
      for (j = i + 1; j < n && (isId(src[j]) || src[j] === '.'); j++);
      emitTok('num', src.slice(i, j));
    } else if (isIdStart(c)) {
      for (j = i + 1; j < n && isId(src[j]); j++);
      const word = src.slice(i, j);
      if (L.kw.has(L.ci ? word.toLowerCase() : word)) emitTok('kw', word);
      else if (src[j] === '(') emitTok('fn', word);
      else plain += word;
    } else {
      plain += c;
      j = i + 1;
    }
    i = j;
  }
  if (plain) frag.appendChild(text(plain));
  return frag;
}
