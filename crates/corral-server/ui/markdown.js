// markdown.js: a small Markdown renderer and code highlighter for the chat page.
//
// Model output is untrusted and arrives in pieces, so it is re-rendered on every
// streamed chunk. Everything here builds DOM nodes (createElement / createTextNode /
// setAttribute) instead of HTML strings: text can never turn into markup, so the page
// stays safe under its strict Content-Security-Policy without a sanitizer. Every scanner
// is linear (no backtracking-prone regexes), incomplete input (an open code fence, a
// lone `**`) renders sensibly, and deep nesting is capped.

const MAX_NEST = 6; // block nesting (lists, quotes) before lines fall back to paragraphs
const MAX_INLINE = 20; // emphasis nesting before delimiters stay literal
const WS = /\s/, PUNCT = /[\p{P}\p{S}]/u, ALNUM = /[\p{L}\p{N}]/u, ASCII_P = /[!-\/:-@\[-`{-~]/;
const SAFE_URL = /^(?:https?|mailto):/i;
const FENCE = /^ {0,3}(`{3,}|~{3,})[ \t]*([^\s`]*)/, CLOSE = /^ {0,3}(`{3,}|~{3,})[ \t]*$/;
const HEAD = /^ {0,3}(#{1,6})(?=[ \t]|$)/, QUOTE = /^ {0,3}> ?/, LIST = /^( *)([-*+]|\d{1,9}[.)])(?:[ \t]+|$)/;

const text = (s) => document.createTextNode(s);
function el(tag, cls, content) { // content: a string or a node
  const e = document.createElement(tag);
  if (cls) e.setAttribute('class', cls);
  if (content !== undefined) e.appendChild(typeof content === 'string' ? text(content) : content);
  return e;
}
const isWs = (c) => c === undefined || c === ' ' || c === '\n' || (c > ' ' && c < '\x7f' ? false : WS.test(c));
const isP = (c) => c !== undefined && (c < '\x80' ? ASCII_P.test(c) : PUNCT.test(c));
const isDigit = (c) => c >= '0' && c <= '9';
const indentOf = (l) => l.length - l.trimStart().length;

export function renderMarkdown(src) {
  const frag = document.createDocumentFragment(), lines = String(src ?? '').replace(/\r\n?/g, '\n').split('\n')
    .map((l) => (l[0] === '\t' || l[0] === ' ' ? l.replace(/^[ \t]+/, (m) => m.replace(/\t/g, '    ')) : l));
  blocks(lines, frag, 0); return frag;
}

// ---- blocks ----

function openFence(line) {
  const m = FENCE.exec(line); return m && !(m[1][0] === '`' && line.indexOf('`', m[0].length) >= 0) ? m : null;
}
function isHr(line) {
  let ch = '', count = 0;
  for (const c of line) {
    if (c !== ' ' && c !== '\t') { if ((c !== '-' && c !== '*' && c !== '_') || (ch && c !== ch)) return false; ch = c; count++; }
  }
  return count >= 3;
}
function splitRow(line) { // cells of `| a | b |`; `\|` is a literal pipe
  let s = line.trim(), cur = '';
  if (s[0] === '|') s = s.slice(1);
  if (s.endsWith('|') && !s.endsWith('\\|')) s = s.slice(0, -1);
  const cells = [];
  for (let k = 0; k < s.length; k++) {
    if (s[k] === '\\' && s[k + 1] === '|') { cur += '|'; k++; } else if (s[k] === '|') { cells.push(cur.trim()); cur = ''; } else cur += s[k];
  }
  cells.push(cur.trim());
  return cells;
}
function tableStart(lines, i) {
  if (!lines[i].includes('|') || i + 1 >= lines.length || !lines[i + 1].includes('|')) return false;
  const sep = splitRow(lines[i + 1]); return sep.every((c) => /^:?-+:?$/.test(c)) && sep.length === splitRow(lines[i]).length;
}
function listInterrupts(line) { // a list may start right under a paragraph line
  const m = LIST.exec(line); return !!m && m[0].length < line.length && (!isDigit(m[2][0]) || parseInt(m[2], 10) === 1);
}
function startsBlock(lines, i, deep) {
  const l = lines[i]; return !!openFence(l) || HEAD.test(l) || isHr(l) || tableStart(lines, i) || (!deep && (QUOTE.test(l) || listInterrupts(l)));
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
      out.appendChild(el('h' + m[1].length, '', inline(t))); i++;
    } else if (isHr(line)) {
      out.appendChild(el('hr')); i++;
    } else if (!deep && QUOTE.test(line)) {
      const inner = [];
      for (let q; i < lines.length; i++) { // quoted lines, plus lazy continuation lines of a quoted paragraph
        if ((q = QUOTE.exec(lines[i]))) inner.push(lines[i].slice(q[0].length));
        else if (lines[i].trim() && inner[inner.length - 1].trim() && !startsBlock(lines, i, deep)) inner.push(lines[i]);
        else break;
      }
      blocks(inner, out.appendChild(el('blockquote')), depth + 1);
    } else if (!deep && (m = LIST.exec(line))) {
      i = list(lines, i, m, out, depth);
    } else if (tableStart(lines, i)) {
      i = table(lines, i, out);
    } else {
      const para = [line.trim()];
      for (i++; i < lines.length && lines[i].trim() && !startsBlock(lines, i, deep); i++) para.push(lines[i].trim());
      out.appendChild(el('p', '', inline(para.join('\n'))));
    }
  }
}

function list(lines, i, m, out, depth) {
  const ordered = isDigit(m[2][0]), base = m[1].length, items = [], ul = el(ordered ? 'ol' : 'ul');
  if (ordered && parseInt(m[2], 10) !== 1) ul.setAttribute('start', String(parseInt(m[2], 10)));
  const sibling = (l) => { // an item at this list's level (of either kind; the other kind ends the list)
    const lm = LIST.exec(l); return lm && lm[1].length < base + 2 && !isHr(l) ? lm : null;
  };
  let loose = false, cur = null;
  while (i < lines.length) {
    const l = lines[i], lm = sibling(l);
    if (lm) {
      if (isDigit(lm[2][0]) !== ordered) break;
      const bare = lm[1].length + lm[2].length, off = lm[0].length - bare > 4 || lm[0].length === l.length ? bare + 1 : lm[0].length;
      items.push((cur = { lines: [l.slice(lm[0].length)], off })); i++;
    } else if (!l.trim()) { // a blank line continues the list only if more of it follows
      let j = i + 1;
      for (; j < lines.length && !lines[j].trim(); j++);
      const nm = j < lines.length && sibling(lines[j]);
      if (j >= lines.length || (!(nm && isDigit(nm[2][0]) === ordered) && indentOf(lines[j]) < base + 2)) break;
      loose = true; cur.lines.push(''); i = j;
    } else if (indentOf(l) >= base + 2) {
      cur.lines.push(l.slice(Math.min(indentOf(l), cur.off))); i++;
    } else if (cur.lines[cur.lines.length - 1].trim() && !startsBlock(lines, i, false)) {
      cur.lines.push(l); i++; // lazy continuation of the item's paragraph
    } else break;
  }
  for (const it of items) {
    const f = document.createDocumentFragment(); blocks(it.lines, f, depth + 1);
    for (const c of loose ? [] : Array.from(f.childNodes)) { // tight list: item text goes straight into <li>
      if (c.nodeName === 'P') { while (c.firstChild) f.insertBefore(c.firstChild, c); f.removeChild(c); }
    }
    ul.appendChild(el('li', '', f));
  }
  out.appendChild(ul); return i;
}

function table(lines, i, out) {
  const head = splitRow(lines[i]), t = el('table'), tbody = el('tbody');
  const aligns = splitRow(lines[i + 1]).map((c) =>
    c.endsWith(':') ? (c[0] === ':' ? 'align-center' : 'align-right') : c[0] === ':' ? 'align-left' : '');
  const row = (cells, tag) => { const tr = el('tr'); head.forEach((_, k) => tr.appendChild(el(tag, aligns[k], inline(cells[k] || '')))); return tr; };
  t.appendChild(el('thead', '', row(head, 'th')));
  for (i += 2; i < lines.length && lines[i].trim() && lines[i].includes('|'); i++) tbody.appendChild(row(splitRow(lines[i]), 'td'));
  if (tbody.firstChild) t.appendChild(tbody);
  out.appendChild(el('div', 'table-wrap', t)); return i;
}

function codeBlock(lang, code) {
  const btn = el('button', 'copy', 'Copy'), c = el('code', lang ? 'lang-' + lang : '', highlight(code, lang));
  btn.setAttribute('type', 'button');
  btn.setAttribute('aria-label', 'Copy code');
  let timer = 0;
  const done = () => { btn.textContent = 'Copied'; clearTimeout(timer); timer = setTimeout(() => { btn.textContent = 'Copy'; }, 1500); };
  const fallback = () => { // select the code and use the legacy copy command
    const sel = window.getSelection(), range = document.createRange();
    range.selectNodeContents(c); sel.removeAllRanges(); sel.addRange(range);
    let ok = false;
    try { ok = document.execCommand('copy'); } catch { /* unsupported */ }
    sel.removeAllRanges(); if (ok) done();
  };
  btn.addEventListener('click', () => (navigator.clipboard?.writeText ? navigator.clipboard.writeText(code).then(done, fallback) : fallback()));
  const head = el('div', 'code-head', el('span', 'code-lang', lang)), box = el('div', 'code', head);
  head.appendChild(btn); box.appendChild(el('pre', '', c));
  return box;
}

// ---- inline ----
// One left-to-right pass builds a linked list of nodes (text, code, breaks, links,
// delimiter runs); `**` `*` `_` `~~` runs are then paired with a CommonMark-style
// delimiter stack. Unpaired delimiters simply stay as text.

function inline(src) {
  const head = { k: 'txt', s: '', idx: -1, next: null }, n = src.length, delims = [], brackets = [];
  let tail = head, seq = 0, buf = '', floor = 0, i = 0; // brackets below `floor` can't form links
  const add = (node) => { node.idx = seq++; node.prev = tail; node.next = null; tail.next = node; return (tail = node); };
  const flush = () => { if (buf) add({ k: 'txt', s: buf }); buf = ''; };
  const push = (node) => { flush(); return add(node); };
  const runs = new Map(), cursor = new Map(); // backtick runs by length: each closer is found in amortized O(1)
  for (let p = src.indexOf('`'), s; p >= 0; p = src.indexOf('`', p)) {
    for (s = p; src[p] === '`';) p++;
    (runs.get(p - s) || runs.set(p - s, []).get(p - s)).push(s);
  }
  const closer = (len, from) => {
    const arr = runs.get(len) || [];
    let c = cursor.get(len) || 0;
    for (; c < arr.length && arr[c] < from; c++);
    cursor.set(len, c); return c < arr.length ? arr[c] : -1;
  };
  while (i < n) {
    const c = src[i];
    if (c === '\\' && ASCII_P.test(src[i + 1] || '')) { buf += src[i + 1]; i += 2; continue; }
    if (c === '\n') { push({ k: 'br' }); i++; continue; }
    if (c === '`' || c === '*' || c === '_' || c === '~') {
      let e = i;
      for (; src[e] === c; e++);
      const end = c === '`' ? closer(e - i, e) : 0;
      if (end < 0 || (c === '~' && e - i !== 2)) { buf += src.slice(i, e); i = e; continue; }
      if (c === '`') {
        let body = src.slice(e, end);
        if (body.includes('\n')) body = body.replace(/\n/g, ' ');
        if (body.length > 1 && body[0] === ' ' && body[body.length - 1] === ' ' && body.trim()) body = body.slice(1, -1);
        push({ k: 'code', s: body }); i = end + (e - i); continue;
      }
      const prev = src[i - 1], next = src[e]; // CommonMark flanking rules
      const lf = !isWs(next) && (!isP(next) || isWs(prev) || isP(prev));
      const rf = !isWs(prev) && (!isP(prev) || isWs(next) || isP(next));
      const open = c === '_' ? lf && (!rf || isP(prev)) : lf, close = c === '_' ? rf && (!lf || isP(next)) : rf;
      if (open || close) delims.push(push({ k: 'delim', ch: c, n: e - i, open, close }));
      else buf += src.slice(i, e);
      i = e; continue;
    }
    if (c === '[') { brackets.push(push({ k: 'txt', s: '[' })); i++; continue; }
    if (c === ']') {
      const b = brackets.pop(), active = b && brackets.length >= floor;
      if (floor > brackets.length) floor = brackets.length;
      const dest = active && src[i + 1] === '(' ? linkDest(src, i + 2) : null;
      if (!dest || !SAFE_URL.test(dest.url)) { buf += ']'; i++; continue; } // javascript: etc. stay text
      flush();
      const inner = [], kids = [];
      while (delims.length && delims[delims.length - 1].idx > b.idx) inner.push(delims.pop());
      pairDelims(inner.reverse());
      for (let x = b.next; x; x = x.next) kids.push(x);
      tail = b.prev;
      add({ k: 'el', tag: 'a', href: dest.url, kids, depth: 1 + maxDepth(kids) });
      floor = brackets.length; i = dest.end; continue; // no links inside links
    }
    if (c === 'h' && brackets.length <= floor && (src.startsWith('https://', i) || src.startsWith('http://', i)) &&
        !ALNUM.test(src[i - 1] || ' ')) {
      let e = i, opens = 0, closes = 0;
      for (; e < n && !WS.test(src[e]) && src[e] !== '<' && src[e] !== '`'; e++) {
        if (src[e] === '(') opens++; else if (src[e] === ')') closes++;
      }
      for (let l; (l = src[e - 1]) && ('.,:;!?\'"*_~'.includes(l) || (l === ')' && closes > opens)); e--) { // trailing punctuation,
        if (l === ')') closes--; // unbalanced ')' are not part of the URL
      }
      const url = src.slice(i, e);
      if (url.length > url.indexOf('//') + 2) {
        push({ k: 'el', tag: 'a', href: url, kids: [{ k: 'txt', s: url }], depth: 1 }); i = e; continue;
      }
    }
    buf += c; i++;
  }
  flush(); pairDelims(delims);
  return emit(head.next);
}

function linkDest(s, p) { // `(url)` or `(url "title")`; the title is ignored
  while (s[p] === ' ') p++;
  const start = p;
  for (let depth = 0; p < s.length; p++) {
    const c = s[p];
    if (c === '(') depth++;
    else if (c === ')') { if (!depth) break; depth--; } else if (c === '[' || c === ']' || c === '<' || WS.test(c)) break;
  }
  const url = s.slice(start, p);
  for (; s[p] === ' '; p++);
  if (s[p] === '"' && s[p - 1] === ' ') p = s.indexOf('"', p + 1) + 1 || s.length; // skip a "title"
  for (; s[p] === ' '; p++);
  return url && s[p] === ')' ? { url, end: p + 1 } : null;
}

const maxDepth = (kids) => kids.reduce((m, k) => Math.max(m, k.depth || 0), 0);

function pairDelims(ds) {
  const stack = [], bottom = { '*': -1, _: -1, '~': -1 }; // per char: openers below this idx can't match
  for (const d of ds) {
    while (d.close && d.n > 0) {
      const fl = bottom[d.ch];
      let k = stack.length - 1;
      while (k >= 0 && stack[k].idx >= fl && stack[k].ch !== d.ch) k--;
      if (k < 0 || stack[k].idx < fl) { bottom[d.ch] = d.idx; break; }
      const o = stack[k], use = d.ch === '~' || (o.n >= 2 && d.n >= 2) ? 2 : 1, kids = [];
      for (let x = o.next; x !== d; x = x.next) kids.push(x);
      let tag = d.ch === '~' ? 'del' : use === 2 ? 'strong' : 'em', depth = maxDepth(kids) + 1;
      if (depth > MAX_INLINE) { // too deep: keep the delimiters as text
        kids.unshift({ k: 'txt', s: d.ch.repeat(use) }); kids.push({ k: 'txt', s: d.ch.repeat(use) }); tag = null; depth--;
      }
      o.next = d.prev = { k: 'el', tag, kids, depth, prev: o, next: d };
      o.n -= use; d.n -= use;
      stack.length = o.n > 0 ? k + 1 : k; // openers in between can no longer match
    }
    if (d.open && d.n > 0) stack.push(d);
  }
}

// Node list to DOM, without recursion (the node tree's depth is not bounded).
// Adjacent text is joined in a JS string first: appendData on a growing node is quadratic.
function emit(first) {
  const frag = document.createDocumentFragment(), top = [], work = [[top, 0, frag]];
  for (let x = first; x; x = x.next) top.push(x);
  let pend = '', pendTo = frag;
  const flush = () => { if (pend) pendTo.appendChild(text(pend)); pend = ''; };
  while (work.length) {
    const w = work[work.length - 1], node = w[0][w[1]++], parent = w[2];
    if (!node) { flush(); work.pop(); continue; }
    if (node.k === 'txt' || node.k === 'delim') {
      if (pendTo !== parent) flush();
      pendTo = parent; pend += node.k === 'txt' ? node.s : node.ch.repeat(node.n); continue;
    }
    flush();
    if (node.k === 'br') parent.appendChild(el('br'));
    else if (node.k === 'code') parent.appendChild(el('code', '', node.s));
    else if (!node.tag) work.push([node.kids, 0, parent]);
    else {
      const e = parent.appendChild(el(node.tag));
      if (node.tag === 'a') for (const [k, v] of [['href', node.href], ['rel', 'noopener noreferrer'], ['target', '_blank']]) e.setAttribute(k, v);
      work.push([node.kids, 0, e]);
    }
  }
  return frag;
}

// ---- highlighting ----

const JS_KW = 'async await break case catch class const continue debugger default delete do else export extends finally for from function if import in instanceof let new of return static super switch this throw try typeof var void while with yield null undefined true false';
const C_KW = 'auto break case char const continue default do double else enum extern float for goto if inline int long register return short signed sizeof static struct switch typedef union unsigned void volatile while NULL bool true false';
const LANGS = {};
function lang(names, words, opts) {
  const cfg = { line: ['//'], block: true, q: '\'"`', ...opts, kw: new Set(words.split(' ')) };
  for (const name of names.split(' ')) LANGS[name] = cfg;
}
lang('javascript js jsx mjs cjs', JS_KW);
lang('typescript ts tsx', JS_KW + ' interface type enum implements private public protected readonly declare namespace abstract as any number string boolean never unknown keyof satisfies');
lang('python py', 'False None True and as assert async await break class continue def del elif else except finally for from global if import in is lambda nonlocal not or pass raise return try while with yield self match case', { line: ['#'], block: false, q: '\'"', triple: true, hashAny: true });
lang('rust rs', 'as async await break const continue crate dyn else enum extern false fn for if impl in let loop match mod move mut pub ref return self Self static struct super trait true type unsafe use where while Some None Ok Err', { q: '"\'', rustChar: true });
lang('go golang', 'break case chan const continue default defer else fallthrough for func go goto if import interface map package range return select struct switch type var nil true false');
lang('c h', C_KW, { q: '\'"' });
lang('cpp c++ cc cxx hpp', C_KW + ' class namespace template typename public private protected virtual override new delete this using nullptr constexpr try catch throw operator friend explicit noexcept std', { q: '\'"' });
lang('java', 'abstract boolean break byte case catch char class continue default do double else enum extends final finally float for if implements import instanceof int interface long new package private protected public return short static super switch synchronized this throw throws try void volatile while null true false var record', { q: '\'"' });
lang('sh bash shell zsh console', 'if then else elif fi for while until do done case esac function in return local export echo exit set unset source alias readonly shift cd', { line: ['#'], block: false });
lang('json jsonc', 'true false null', { line: [], block: false, q: '"' });
lang('sql', 'select from where insert into values update set delete create table drop alter add index primary key foreign references join left right inner outer on group by order having limit offset as and or not null is in like between distinct union all case when then else end exists default unique', { line: ['--'], ci: true });
lang('ruby rb', 'def end if elsif else unless while until do class module return yield nil true false self require begin rescue ensure', { line: ['#'], block: false });
lang('yaml yml toml', 'true false null yes no', { line: ['#'], block: false });
lang('lua', 'and break do else elseif end false for function goto if in local nil not or repeat return then true until while', { line: ['--'], block: false, q: '\'"' });
const GENERIC = { line: ['//', '#'], block: true, q: '\'"`', kw: new Set('if else for while do return function fn def func class struct let const var import from export new true false null nil None self this public private static void int'.split(' ')) };
const PLAIN = new Set(['', 'text', 'txt', 'plain', 'plaintext', 'md', 'markdown', 'output', 'log']);
const isIdStart = (c) => (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c === '_' || c === '$';
const isId = (c) => isIdStart(c) || isDigit(c);

export function highlight(code, language) {
  const frag = document.createDocumentFragment(), src = String(code ?? ''), key = String(language || '').toLowerCase();
  if (PLAIN.has(key)) { frag.appendChild(text(src)); return frag; }
  const L = LANGS[key] || GENERIC, n = src.length;
  let plain = '', i = 0, j;
  const tok = (cls, end) => { if (plain) frag.appendChild(text(plain)); plain = ''; frag.appendChild(el('span', 'tok-' + cls, src.slice(i, end))); };
  for (; i < n; i = j) {
    const c = src[i];
    if (L.line.some((p) => src.startsWith(p, i)) && (c !== '#' || L.hashAny || i === 0 || WS.test(src[i - 1]))) {
      j = src.indexOf('\n', i); tok('com', (j = j < 0 ? n : j));
    } else if (L.block && c === '/' && src[i + 1] === '*') {
      j = src.indexOf('*/', i + 2); tok('com', (j = j < 0 ? n : j + 2));
    } else if (L.q.includes(c) && !(L.rustChar && c === "'" && src[i + 2] !== "'" && src[i + 1] !== '\\')) {
      if (L.triple && src.startsWith(c + c + c, i)) {
        j = src.indexOf(c + c + c, i + 3); j = j < 0 ? n : j + 3;
      } else { // a string ends at its quote, or at the line's end unless it is a `template`
        for (j = i + 1; j < n; j++) {
          if (src[j] === '\\') j++;
          else if (src[j] === c) { j++; break; } else if (src[j] === '\n' && c !== '`') break;
        }
        j = Math.min(j, n);
      }
      tok('str', j);
    } else if (isDigit(c)) {
      for (j = i + 1; j < n && (isId(src[j]) || src[j] === '.'); j++); tok('num', j);
    } else if (isIdStart(c)) {
      for (j = i + 1; j < n && isId(src[j]); j++);
      const word = src.slice(i, j);
      if (L.kw.has(L.ci ? word.toLowerCase() : word)) tok('kw', j);
      else if (src[j] === '(') tok('fn', j);
      else plain += word;
    } else { plain += c; j = i + 1; }
  }
  if (plain) frag.appendChild(text(plain));
  return frag;
}
