// Renders /openapi.json as a readable reference. Plain DOM, nothing from outside the binary
// (the page runs under Content-Security-Policy: default-src 'self').

const el = (tag, attrs = {}, ...children) => {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  for (const c of children.flat()) node.append(c instanceof Node ? c : document.createTextNode(String(c ?? '')));
  return node;
};

const refName = (ref) => ref.split('/').pop();

function schemaText(schema) {
  if (!schema) return '';
  if (schema.$ref) return refName(schema.$ref);
  if (schema.type === 'array') return `array of ${schemaText(schema.items)}`;
  if (Array.isArray(schema.type)) return schema.type.join(' | ');
  if (schema.oneOf) return schema.oneOf.map(schemaText).join(' | ');
  return schema.format ? `${schema.type} (${schema.format})` : schema.type || 'object';
}

function operation(path, method, op) {
  const section = el('section', { class: 'docs-op', id: `${method}-${path}` });
  section.append(el('h3', {}, el('span', { class: `docs-method docs-${method}` }, method.toUpperCase()), ' ', el('code', {}, path)));
  if (op.description || op.summary) section.append(el('p', {}, op.summary || op.description));
  const params = op.parameters || [];
  if (params.length) {
    const rows = params.map((p) => el('tr', {}, el('td', {}, el('code', {}, p.name)), el('td', {}, p.in),
      el('td', {}, schemaText(p.schema)), el('td', {}, p.required ? 'yes' : 'no'), el('td', {}, p.description || '')));
    section.append(el('table', { class: 'docs-table' },
      el('thead', {}, el('tr', {}, ['Parameter', 'In', 'Type', 'Required', 'Description'].map((t) => el('th', { scope: 'col' }, t)))),
      el('tbody', {}, rows)));
  }
  const body = op.requestBody?.content?.['application/json']?.schema;
  if (body) section.append(el('p', {}, 'Body: ', el('a', { href: `#schema-${schemaText(body)}` }, schemaText(body))));
  const responses = Object.entries(op.responses || {}).map(([status, r]) => {
    const schema = r.content?.['application/json']?.schema;
    return el('li', {}, el('strong', {}, status), ' ', r.description || '', schema ? ` → ${schemaText(schema)}` : '');
  });
  section.append(el('ul', { class: 'docs-responses' }, responses));
  return section;
}

function schemaSection(name, schema) {
  const props = Object.entries(schema.properties || {});
  const required = new Set(schema.required || []);
  const rows = props.map(([prop, s]) => el('tr', {}, el('td', {}, el('code', {}, prop)), el('td', {}, schemaText(s)),
    el('td', {}, required.has(prop) ? 'yes' : 'no'), el('td', {}, s.description || '')));
  return el('section', { class: 'docs-schema', id: `schema-${name}` }, el('h3', {}, name),
    schema.description ? el('p', {}, schema.description) : '',
    rows.length ? el('table', { class: 'docs-table' },
      el('thead', {}, el('tr', {}, ['Field', 'Type', 'Required', 'Description'].map((t) => el('th', { scope: 'col' }, t)))),
      el('tbody', {}, rows)) : '');
}

async function main() {
  const root = document.getElementById('docs');
  try {
    const spec = await (await fetch('/openapi.json')).json();
    root.textContent = '';
    root.append(el('p', {}, spec.info?.description || ''));
    root.append(el('h2', {}, 'Endpoints'));
    for (const [path, methods] of Object.entries(spec.paths)) {
      for (const [method, op] of Object.entries(methods)) root.append(operation(path, method, op));
    }
    root.append(el('h2', {}, 'Schemas'));
    for (const [name, schema] of Object.entries(spec.components?.schemas || {})) root.append(schemaSection(name, schema));
  } catch (e) {
    root.textContent = `Could not load /openapi.json: ${e.message}`;
  }
}

main();
