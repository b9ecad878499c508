/**
 * The docs pages' own browser assets, kept as strings rather than files: tsup bundles this
 * package into the CLI's dist, where sibling asset files would not follow, while a string does.
 * The renderer itself (Scalar) is served from its installed npm package (docs.ts).
 */

/**
 * Starts Scalar on `#api-reference-root` with the configuration in its `data-configuration`
 * attribute: the page has no inline script, so a CSP of `script-src 'self'` holds.
 */
export const SCALAR_INIT_JS = `(function () {
  var root = document.getElementById('api-reference-root');
  if (!root || !window.Scalar) return;
  window.Scalar.createApiReference(root, JSON.parse(root.getAttribute('data-configuration') || '{}'));
})();
`;

/**
 * Renders an AsyncAPI 3.0 document (fetched from \`data-document\`) as plain HTML: info,
 * servers, channels with their messages and payload schemas, operations and security schemes.
 * Deliberately small and dependency-free; text goes in through textContent only (no innerHTML),
 * so nothing in the document can inject markup.
 */
export const ASYNCAPI_JS = `(function () {
  var root = document.getElementById('asyncapi-root');
  if (!root) return;
  var url = root.getAttribute('data-document');

  function el(tag, className, text) {
    var node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  }
  function add(parent, child) { parent.appendChild(child); return child; }
  function resolve(doc, value, depth) {
    // Local references only (#/components/...): the document is self-contained.
    depth = depth || 0;
    if (!value || typeof value !== 'object' || typeof value.$ref !== 'string' || depth > 16) return value;
    var ref = value.$ref;
    if (ref.charAt(0) !== '#') return value;
    var target = doc;
    var parts = ref.slice(2).split('/');
    for (var i = 0; i < parts.length && target; i++) target = target[parts[i].replace(/~1/g, '/').replace(/~0/g, '~')];
    return target ? resolve(doc, target, depth + 1) : value;
  }
  function refName(value) {
    return value && typeof value.$ref === 'string' ? value.$ref.split('/').pop() : undefined;
  }
  function entries(object) {
    return object && typeof object === 'object' ? Object.keys(object).map(function (key) { return [key, object[key]]; }) : [];
  }
  function schemaBlock(doc, schema) {
    var details = el('details', 'schema');
    add(details, el('summary', null, 'Payload schema'));
    add(details, el('pre', null, JSON.stringify(expand(doc, schema, 0), null, 2)));
    return details;
  }
  function expand(doc, value, depth) {
    // Inlines local $refs for display, bounded so a recursive schema cannot loop.
    if (Array.isArray(value)) return value.map(function (v) { return expand(doc, v, depth + 1); });
    if (!value || typeof value !== 'object') return value;
    if (typeof value.$ref === 'string' && depth < 12) return expand(doc, resolve(doc, value), depth + 1);
    var out = {};
    entries(value).forEach(function (e) { out[e[0]] = expand(doc, e[1], depth + 1); });
    return out;
  }
  function message(doc, key, value) {
    var m = resolve(doc, value) || {};
    var box = el('div', 'message');
    box.id = 'message-' + (m.name || key);
    add(box, el('h4', null, m.title || m.name || key));
    if (m.summary) add(box, el('p', null, m.summary));
    if (m.description && m.description !== m.summary) add(box, el('p', 'description', m.description));
    if (m.payload) add(box, schemaBlock(doc, m.payload));
    return box;
  }
  function render(doc) {
    root.textContent = '';
    var info = doc.info || {};
    add(root, el('h1', null, info.title || 'AsyncAPI'));
    add(root, el('p', 'meta', 'AsyncAPI ' + (doc.asyncapi || '?') + ' · version ' + (info.version || '?')));
    if (info.description) add(root, el('p', 'description', info.description));

    var servers = entries(doc.servers);
    if (servers.length) {
      add(root, el('h2', null, 'Servers'));
      var list = add(root, el('ul'));
      servers.forEach(function (e) {
        var s = e[1] || {};
        add(list, el('li', null, e[0] + ': ' + (s.protocol || '') + ' ' + (s.host || '') + (s.pathname || '')));
      });
    }

    add(root, el('h2', null, 'Channels'));
    entries(doc.channels).forEach(function (e) {
      var channel = resolve(doc, e[1]) || {};
      var section = add(root, el('section', 'channel'));
      section.id = 'channel-' + e[0];
      add(section, el('h3', null, channel.address || e[0]));
      if (channel.title) add(section, el('p', 'title', channel.title));
      if (channel.summary) add(section, el('p', null, channel.summary));
      if (channel.description) add(section, el('p', 'description', channel.description));
      var ops = entries(doc.operations).filter(function (o) { return refName((o[1] || {}).channel) === e[0]; });
      ops.forEach(function (o) {
        var op = o[1] || {};
        var p = add(section, el('p', 'operation'));
        add(p, el('span', 'action action-' + op.action, op.action === 'send' ? 'client → server' : op.action === 'receive' ? 'server → client' : op.action));
        add(p, document.createTextNode(' ' + (op.title || op.summary || o[0])));
      });
      entries(channel.messages).forEach(function (m) { add(section, message(doc, m[0], m[1])); });
    });

    var schemes = entries((doc.components || {}).securitySchemes);
    if (schemes.length) {
      add(root, el('h2', null, 'Security schemes'));
      var dl = add(root, el('dl'));
      schemes.forEach(function (e) {
        var s = resolve(doc, e[1]) || {};
        add(dl, el('dt', null, e[0] + ' (' + (s.type || '?') + (s.scheme ? ', ' + s.scheme : '') + ')'));
        add(dl, el('dd', null, s.description || ''));
      });
    }
  }

  fetch(url, { headers: { Accept: 'application/json' } })
    .then(function (res) {
      if (res.status === 404) throw new Error('This server publishes no AsyncAPI document (' + url + ' answered 404).');
      if (!res.ok) throw new Error(url + ' answered ' + res.status);
      return res.json();
    })
    .then(render, function (err) {
      root.textContent = '';
      add(root, el('p', 'notice', err && err.message ? err.message : String(err)));
    });
})();
`;

/** Styles of the errors and AsyncAPI pages (the OpenAPI page is styled by Scalar). */
export const DOCS_CSS = `:root { --docs-fg: #1b1f24; --docs-muted: #57606a; --docs-bg: #fff; --docs-box: #f6f8fa; --docs-line: #d0d7de; --docs-accent: #0969da; }
@media (prefers-color-scheme: dark) { :root { --docs-fg: #e6edf3; --docs-muted: #8d96a0; --docs-bg: #0d1117; --docs-box: #161b22; --docs-line: #30363d; --docs-accent: #4493f8; } }
/* The nav is on every page, Scalar's too; everything else is scoped to our own pages (Scalar styles its own). */
nav.docs-nav { display: flex; flex-wrap: wrap; gap: 1.25rem; padding: .6rem 1.5rem; border-bottom: 1px solid var(--docs-line); font: 15px/1.5 system-ui, -apple-system, "Segoe UI", sans-serif; background: var(--docs-bg); }
nav.docs-nav a { color: var(--docs-accent); text-decoration: none; }
nav.docs-nav a[aria-current="page"] { color: var(--docs-fg); font-weight: 600; }
body.docs-plain { margin: 0; font: 16px/1.5 system-ui, -apple-system, "Segoe UI", sans-serif; color: var(--docs-fg); background: var(--docs-bg); color-scheme: light dark; }
.docs-plain main { max-width: 60rem; margin: 0 auto; padding: 1rem 1.5rem 4rem; }
.docs-plain h1 { font-size: 1.9rem; margin: 1rem 0 .25rem; }
.docs-plain h2 { margin-top: 2rem; border-bottom: 1px solid var(--docs-line); padding-bottom: .25rem; }
.docs-plain h3 { font-size: 1.05rem; }
.docs-plain section.channel h3 { font-family: ui-monospace, SFMono-Regular, Menlo, monospace; }
.docs-plain code, .docs-plain pre { font-family: ui-monospace, SFMono-Regular, Menlo, monospace; font-size: .9em; background: var(--docs-box); border-radius: 4px; }
.docs-plain code { padding: .1em .3em; }
.docs-plain pre { padding: .75rem; overflow: auto; border: 1px solid var(--docs-line); }
.docs-plain .meta, .docs-plain .description, .docs-plain .title { color: var(--docs-muted); }
.docs-plain section.error, .docs-plain section.channel { border: 1px solid var(--docs-line); border-radius: 6px; padding: .25rem 1rem 1rem; margin: 1rem 0; }
.docs-plain section.error:target { border-color: var(--docs-accent); box-shadow: 0 0 0 2px var(--docs-accent); }
.docs-plain section.error h2 { border: 0; margin-top: .75rem; }
.docs-plain section.error h2 a.anchor { color: var(--docs-muted); text-decoration: none; margin-left: .4rem; }
.docs-plain .message { border-left: 3px solid var(--docs-line); padding-left: .75rem; margin: .75rem 0; }
.docs-plain .message h4 { margin: .25rem 0; }
.docs-plain .action { font-size: .8rem; font-weight: 600; border-radius: 999px; padding: .1rem .5rem; background: var(--docs-box); border: 1px solid var(--docs-line); }
.docs-plain .notice { padding: .75rem; border: 1px solid var(--docs-line); border-radius: 6px; background: var(--docs-box); }
`;
