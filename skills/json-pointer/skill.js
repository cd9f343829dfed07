// The json-pointer skill in Node.js, with no library: the template for a skill in any
// language. The protocol (docs/protocol.md) is one JSON request per line on stdin and
// JSON frames on stdout, progress frames first and then one result; logs go to stderr.
'use strict';
const readline = require('node:readline');

// A refusal the caller sees as status skill_error with this code.
class SkillError extends Error {
  constructor(code, message) {
    super(message);
    this.code = code;
  }
}

// RFC 6901: "" is the whole document, "/a/0" the first element of member "a".
function lookup(document, pointer) {
  if (pointer === '') return { found: true, value: document };
  if (!pointer.startsWith('/')) {
    throw new SkillError('bad_pointer', `a JSON pointer starts with "/": ${JSON.stringify(pointer)}`);
  }
  let value = document;
  for (const token of pointer.slice(1).split('/')) {
    const key = token.replace(/~1/g, '/').replace(/~0/g, '~');
    const present = Array.isArray(value)
      ? /^(0|[1-9][0-9]*)$/.test(key) && Number(key) < value.length
      : value !== null && typeof value === 'object' && Object.hasOwn(value, key);
    if (!present) return { found: false };
    value = value[key];
  }
  return { found: true, value };
}

function answer(line) {
  let request;
  try {
    request = JSON.parse(line);
  } catch (e) {
    request = { id: '' };
  }
  const frame = (body) => process.stdout.write(JSON.stringify({ id: request.id, ...body }) + '\n');
  try {
    if (request.action !== 'lookup') {
      throw new SkillError('unknown_action', `no action ${JSON.stringify(request.action)}`);
    }
    frame({ type: 'progress', message: 'looking up', fraction: 0.5 });
    const { document, pointer } = request.args;
    console.error(`looking up ${JSON.stringify(pointer)}`);
    frame({ type: 'result', ok: true, output: lookup(document, pointer) });
  } catch (e) {
    const code = e instanceof SkillError ? e.code : 'internal';
    frame({ type: 'result', ok: false, error: { code, message: e.message } });
  }
}

// One request in a oneshot container; one after another, until stdin ends, in serve mode.
readline.createInterface({ input: process.stdin }).on('line', (line) => {
  if (line.trim() !== '') answer(line);
});
