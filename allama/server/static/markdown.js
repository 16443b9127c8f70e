// A small markdown renderer for chat replies. The text is HTML-escaped first, so the only
// markup in the result is what this file writes: headings, paragraphs, bold, italic,
// strikethrough, inline code, fenced code blocks, lists, block quotes, rules and links
// (http, https and mailto only). An unclosed code fence (a reply still streaming) runs to
// the end of the text.

const ESCAPES = { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' };

export function escapeHtml(text) {
  return text.replace(/[&<>"']/g, (c) => ESCAPES[c]);
}

export function renderMarkdown(source) {
  const text = String(source).replace(/\0/g, '').replace(/\r\n?/g, '\n');
  return blocks(escapeHtml(text).split('\n'));
}

const FENCE = /^ {0,3}(`{3,}|~{3,})\s*([\w+#.-]*)/;
const HEADING = /^ {0,3}(#{1,6})(?:\s+(.*?))?(?:\s+#+)?\s*$/;
const RULE = /^ {0,3}([-*_])(?:\s*\1){2,}\s*$/;
const QUOTE = /^ {0,3}&gt;\s?(.*)$/;
const ITEM = /^(\s*)([-*+]|\d{1,9}[.)])(\s+)(.*)$/;

function listItem(line) {
  const m = line.match(ITEM);
  if (!m) return null;
  const ordered = /\d/.test(m[2]);
  return { indent: m[1].length, ordered, start: ordered ? parseInt(m[2], 10) : 1,
           contentIndent: m[1].length + m[2].length + Math.min(m[3].length, 4), text: m[4] };
}

function startsBlock(line) {
  return FENCE.test(line) || HEADING.test(line) || RULE.test(line) || QUOTE.test(line) || listItem(line) !== null;
}

// Escaped lines to HTML.
function blocks(lines) {
  const out = [];
  let i = 0;
  while (i < lines.length) {
    const line = lines[i];
    let m;
    if (!line.trim()) {
      i++;
    } else if ((m = line.match(FENCE))) {
      const marker = m[1];
      const body = [];
      for (i++; i < lines.length; i++) {
        const close = lines[i].trim();
        if (close[0] === marker[0] && close.length >= marker.length && /^(`+|~+)$/.test(close)) { i++; break; }
        body.push(lines[i]);
      }
      const lang = m[2] ? ` class="language-${m[2]}" data-lang="${m[2]}"` : '';
      out.push(`<pre><code${lang}>${body.join('\n')}</code></pre>`);
    } else if ((m = line.match(HEADING))) {
      const level = m[1].length;
      out.push(`<h${level}>${inline(m[2] || '')}</h${level}>`);
      i++;
    } else if (RULE.test(line)) {
      out.push('<hr>');
      i++;
    } else if (QUOTE.test(line)) {
      const inner = [];
      while (i < lines.length && (m = lines[i].match(QUOTE))) { inner.push(m[1]); i++; }
      out.push(`<blockquote>${blocks(inner)}</blockquote>`);
    } else if ((m = listItem(line))) {
      i = list(lines, i, m, out);
    } else {
      const paragraph = [];
      while (i < lines.length && lines[i].trim() && (paragraph.length === 0 || !startsBlock(lines[i]))) {
        paragraph.push(lines[i].trim());
        i++;
      }
      out.push(`<p>${paragraph.map(inline).join('<br>')}</p>`);
    }
  }
  return out.join('');
}

// The list starting at lines[i] (its first item `first`) into out; returns the next line's index.
function list(lines, i, first, out) {
  const items = [];
  let loose = false;
  let blank = false;
  while (i < lines.length) {
    const m = listItem(lines[i]);
    if (!m || m.ordered !== first.ordered || m.indent > first.indent + 1) break;
    if (blank) loose = true;  // a blank line between items
    const content = [m.text];
    blank = false;
    for (i++; i < lines.length; i++) {
      const line = lines[i];
      const lead = line.length - line.trimStart().length;
      if (!line.trim()) {
        blank = true;
        content.push('');
      } else if (lead > first.indent) {  // indented: this item's (a nested list, a second paragraph)
        content.push(line.slice(Math.min(lead, m.contentIndent)));
        if (blank) loose = true;
        blank = false;
      } else if (!blank && !startsBlock(line)) {  // a lazy continuation of the item's paragraph
        content.push(line.trim());
      } else {
        break;
      }
    }
    while (content.length && !content[content.length - 1].trim()) content.pop();
    items.push(content);
  }
  const tag = first.ordered ? 'ol' : 'ul';
  const start = first.ordered && first.start !== 1 ? ` start="${first.start}"` : '';
  const rendered = items.map((content) => {
    let html = blocks(content);
    if (!loose) html = html.replace(/^<p>([\s\S]*?)<\/p>/, '$1');
    return `<li>${html}</li>`;
  });
  out.push(`<${tag}${start}>${rendered.join('')}</${tag}>`);
  return i;
}

function safeUrl(url) {
  const bare = url.replace(/[\u0000-\u0020\u007f-\u009f]/g, '');
  return /^(https?:\/\/|mailto:)/i.test(bare) || /^[/#?]/.test(bare) || !bare.includes(':');
}

const LINK_ATTRS = 'target="_blank" rel="noopener noreferrer"';

// One escaped line (or heading) to HTML: code spans and links are set aside first, so that
// emphasis markers inside them stay as they are.
function inline(text) {
  const stash = [];
  const keep = (html) => `\0${stash.push(html) - 1}\0`;
  text = text.replace(/(`+)(?!`)([\s\S]*?[^`])\1(?!`)/g, (_, ticks, code) =>
    keep(`<code>${code.replace(/^ ([\s\S]*) $/, '$1')}</code>`));
  text = text.replace(/\[([^\]]+)\]\(([^)\s]+)\)/g, (whole, label, url) =>
    safeUrl(url) ? keep(`<a href="${url}" ${LINK_ATTRS}>${emphasis(label)}</a>`) : whole);
  text = text.replace(/\bhttps?:\/\/(?:(?!&(?:lt|gt|quot|#39);)[^\s\0])+/g, (url) => {
    const trimmed = url.replace(/[.,:;!?)\]*_~]+$/, '');
    return keep(`<a href="${trimmed}" ${LINK_ATTRS}>${trimmed}</a>`) + url.slice(trimmed.length);
  });
  text = emphasis(text);
  for (let n = 0; n < 3 && text.includes('\0'); n++) text = text.replace(/\0(\d+)\0/g, (_, k) => stash[k]);
  return text;
}

function emphasis(text) {
  return text
    .replace(/\*\*(?=\S)([\s\S]*?\S)\*\*/g, '<strong>$1</strong>')
    .replace(/(^|[^\w])__(?=\S)([\s\S]*?\S)__(?!\w)/g, '$1<strong>$2</strong>')
    .replace(/\*(?=[^\s*])([^*]*?[^\s*])?\*/g, (whole, inner) => (inner === undefined ? whole : `<em>${inner}</em>`))
    .replace(/(^|[^\w])_(?=[^\s_])([^_]*?[^\s_])?_(?!\w)/g, (whole, before, inner) =>
      (inner === undefined ? whole : `${before}<em>${inner}</em>`))
    .replace(/~~(?=\S)([\s\S]*?\S)~~/g, '<del>$1</del>');
}
