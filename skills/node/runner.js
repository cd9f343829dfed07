'use strict';
// The node skill: run untrusted JavaScript, speaking skillhost protocol v1.
//
// One request line arrives on stdin; one result frame leaves on stdout: `ok` when the
// code finished normally (exit 0), otherwise a failure whose code says what happened
// (code_exit, code_timeout, code_memory, code_killed, code_output_limit) and whose
// details are the same output (docs/results.md).
//
// The code runs in a child process of its own session and process group, started with
// this runner (boot.js: Node is up and waiting before the request arrives, which is what
// `run.prestart` buys a prewarmed container), whose output is captured up to a bound.
// The answer never waits on more than the code's own run: when its main process ends,
// the rest of its group gets a short grace and is then killed; when a capture bound is
// full, or the time is up, the whole group is killed at once, and what was printed is
// kept.

const fs = require('fs');
const os = require('os');
const path = require('path');
const childProcess = require('child_process');

const CAPTURE_LIMIT = 1 << 20; // bytes kept per stream
const FILE_LIMIT = 256 << 10; // bytes returned per file
const MAX_FILES = 64;
const GRACE_MS = 200; // after the main process ends, how long what it started may write
const DRAIN_MS = 200; // after a kill, how long the pipes may take to close

// Started now, before the request: it waits on fd 3 for the code.
const child = childProcess.spawn(process.execPath, [path.join(__dirname, 'boot.js')], {
  detached: true,
  stdio: ['pipe', 'pipe', 'pipe', 'pipe'],
});
// A write to a process that never reads, or is gone, is not the runner's failure.
child.stdin.on('error', () => {});
child.stdio[3].on('error', () => {});

function send(frame) {
  fs.writeSync(1, JSON.stringify(frame) + '\n');
}

// Answer a request the code never ran for, and go: the waiting code process goes too.
function refuse(frame) {
  send(frame);
  killGroup();
  process.exit(0);
}

function failure(id, code, message) {
  return { type: 'result', id, ok: false, error: { code, message } };
}

function inside(workdir, name) {
  const resolved = path.normalize(path.join(workdir, name));
  return name !== '' && !path.isAbsolute(name) && resolved.startsWith(workdir + path.sep)
    ? resolved : null;
}

// A request file's bytes: a string is UTF-8 text, {base64} any bytes.
function fileBytes(name, content) {
  if (typeof content === 'string') return Buffer.from(content, 'utf8');
  if (content && typeof content === 'object' && Object.keys(content).length === 1 &&
      typeof content.base64 === 'string') {
    if (!/^[A-Za-z0-9+/]*={0,2}$/.test(content.base64) || content.base64.length % 4 !== 0) {
      throw new Error(`file ${JSON.stringify(name)}: its base64 is not valid`);
    }
    return Buffer.from(content.base64, 'base64');
  }
  throw new Error(`file ${JSON.stringify(name)}: give a string (UTF-8 text) or {"base64": "..."}`);
}

function writeFiles(workdir, files) {
  for (const [name, content] of Object.entries(files || {})) {
    const target = inside(workdir, name);
    if (target === null) return `file ${JSON.stringify(name)} is outside the work directory`;
    let bytes;
    try {
      bytes = fileBytes(name, content);
    } catch (error) {
      return error.message;
    }
    fs.mkdirSync(path.dirname(target), { recursive: true });
    fs.writeFileSync(target, bytes);
  }
  return null;
}

// Regular files only, by lstat: a FIFO, socket, device or link would block or never end
// the read.
function snapshot(dir, into = new Map()) {
  let entries;
  try {
    entries = fs.readdirSync(dir, { withFileTypes: true });
  } catch {
    return into;
  }
  for (const entry of entries) {
    const full = path.join(dir, entry.name);
    let st;
    try {
      st = fs.lstatSync(full);
    } catch {
      continue;
    }
    if (st.isDirectory()) snapshot(full, into);
    else if (st.isFile()) into.set(full, `${st.mtimeMs}:${st.size}`);
  }
  return into;
}

// Not following a link and not blocking; checked again on the descriptor, as the name
// may have become a FIFO since it was listed.
function encode(file) {
  let fd;
  try {
    fd = fs.openSync(file, fs.constants.O_RDONLY | fs.constants.O_NOFOLLOW | fs.constants.O_NONBLOCK);
  } catch {
    return null;
  }
  try {
    if (!fs.fstatSync(fd).isFile()) return null;
    const buffer = Buffer.alloc(FILE_LIMIT + 1);
    let read = 0;
    for (;;) {
      const n = fs.readSync(fd, buffer, read, buffer.length - read, null);
      if (n === 0 || read + n >= buffer.length) { read += n; break; }
      read += n;
    }
    const truncated = read > FILE_LIMIT;
    const data = buffer.subarray(0, Math.min(read, FILE_LIMIT));
    const text = data.toString('utf8');
    if (Buffer.from(text, 'utf8').equals(data)) return { content: text, encoding: 'utf-8', truncated };
    return { content: data.toString('base64'), encoding: 'base64', truncated };
  } catch {
    return null;
  } finally {
    fs.closeSync(fd);
  }
}

function changedFiles(workdir, before) {
  const files = {};
  const after = [...snapshot(workdir).entries()].sort(([a], [b]) => (a < b ? -1 : 1));
  for (const [file, stamp] of after) {
    if (before.get(file) === stamp || Object.keys(files).length >= MAX_FILES) continue;
    const encoded = encode(file);
    if (encoded !== null) files[path.relative(workdir, file)] = encoded;
  }
  return files;
}

function cgroupValue(paths) {
  for (const [file, key] of paths) {
    let text;
    try {
      text = fs.readFileSync(file, 'utf8');
    } catch {
      continue;
    }
    if (key === null) {
      const value = Number(text.trim());
      if (Number.isFinite(value)) return value;
      continue;
    }
    for (const line of text.split('\n')) {
      const [name, value] = line.split(' ');
      if (name === key && Number.isFinite(Number(value))) return Number(value);
    }
  }
  return null;
}

const oomKills = () => cgroupValue([
  ['/sys/fs/cgroup/memory.events', 'oom_kill'],
  ['/sys/fs/cgroup/memory/memory.oom_control', 'oom_kill'],
]);
const memoryLimit = () => cgroupValue([
  ['/sys/fs/cgroup/memory.max', null],
  ['/sys/fs/cgroup/memory/memory.limit_in_bytes', null],
]);

// The line of stderr that says what went wrong: for an uncaught exception Node prints
// the error, then its stack (`at ...`) and its own version, which say less.
function lastLine(text) {
  const lines = text.split('\n').map((l) => l.trim())
    .filter((l) => l !== '' && !l.startsWith('at ') && !/^Node\.js v\d/.test(l));
  return lines.length ? lines[lines.length - 1].slice(0, 300) : '';
}

// Why the code did not finish normally, as [code, message]; null when it did.
function didNotFinish(output, timeoutMs, signal, oomsBefore) {
  if (output.timed_out) {
    return ['code_timeout', `the code ran past its time (${(timeoutMs / 1000).toFixed(1)}s) and was stopped`];
  }
  if (output.truncated) {
    return ['code_output_limit', `the code printed more than ${CAPTURE_LIMIT >> 20} MiB on stdout or stderr and was stopped`];
  }
  const oomsAfter = oomKills();
  if (oomsBefore !== null && oomsAfter !== null && oomsAfter > oomsBefore) {
    const limit = memoryLimit();
    const within = limit && limit < 2 ** 50 ? ` (${Math.floor(limit / 2 ** 20)} MiB)` : '';
    return ['code_memory', `the code was killed for memory: it went past the skill's memory limit${within}`];
  }
  if (signal) return ['code_killed', `the code was killed by ${signal}`];
  if (output.exit_code !== 0) {
    const last = lastLine(output.stderr);
    const message = `the code exited with status ${output.exit_code}`;
    return ['code_exit', last ? `${message}: ${last}` : message];
  }
  return null;
}

function killGroup() {
  try {
    process.kill(-child.pid, 'SIGKILL');
  } catch {
    // Gone already.
  }
}

function run(request) {
  const id = request.id;
  const args = request.args || {};
  if (typeof args.code !== 'string') return refuse(failure(id, 'invalid_args', 'code must be a string'));
  let workdir = '/tmp/work';
  try {
    fs.accessSync('/workspace', fs.constants.W_OK);
    workdir = '/workspace';
  } catch {
    // No workspace: the call's own tmpfs.
  }
  fs.mkdirSync(workdir, { recursive: true });
  const written = writeFiles(workdir, args.files);
  if (written !== null) return refuse(failure(id, 'invalid_args', written));
  const before = snapshot(workdir);
  const oomsBefore = oomKills();
  // Leave a second for the answer: past the deadline the host kills everything.
  const timeoutMs = request.deadline_ms ? Math.max(500, request.deadline_ms - 1000) : null;

  const kept = { stdout: [], stderr: [] };
  const size = { stdout: 0, stderr: 0 };
  let truncated = false, timedOut = false, killed = false, finished = false;
  let exit = null;
  let open = 2;
  let stopTimer = null;

  const finish = () => {
    if (finished) return;
    finished = true;
    if (exit === null) killGroup();
    const [code, signal] = exit || [null, 'SIGKILL'];
    const signalNumber = signal ? os.constants.signals[signal] || 9 : 0;
    const output = {
      stdout: Buffer.concat(kept.stdout).toString('utf8'),
      stderr: Buffer.concat(kept.stderr).toString('utf8'),
      exit_code: signal ? -signalNumber : code,
      timed_out: timedOut,
      truncated,
      files: changedFiles(workdir, before),
    };
    const problem = didNotFinish(output, timeoutMs, killed ? null : signal, oomsBefore);
    send(problem === null
      ? { type: 'result', id, ok: true, output }
      : { type: 'result', id, ok: false, error: { code: problem[0], message: problem[1], details: output } });
    // What the code left holding the pipes (a process in a session of its own) is not
    // waited for: the container goes with the call.
    process.exit(0);
  };
  const stopAfter = (ms) => {
    if (stopTimer === null) stopTimer = setTimeout(finish, ms);
  };
  const killNow = () => {
    killed = true;
    killGroup();
    clearTimeout(stopTimer);
    stopTimer = null;
    stopAfter(DRAIN_MS);
  };

  for (const stream of ['stdout', 'stderr']) {
    child[stream].on('data', (chunk) => {
      const room = CAPTURE_LIMIT - size[stream];
      if (room > 0) {
        const part = chunk.subarray(0, room);
        kept[stream].push(part);
        size[stream] += part.length;
      }
      if (chunk.length > room && !truncated) {
        // Full: nothing more of this run will be kept, so it need not go on.
        truncated = true;
        killNow();
      }
    });
    child[stream].on('close', () => {
      open -= 1;
      if (open === 0 && exit !== null) finish();
    });
  }
  child.on('exit', (code, signal) => {
    exit = [code, signal];
    if (open === 0) return finish();
    // The main process is done: what it started gets the grace, then the group goes.
    if (!killed) setTimeout(killNow, GRACE_MS);
  });
  if (timeoutMs !== null) {
    setTimeout(() => {
      if (exit === null) {
        timedOut = true;
        killNow();
      }
    }, timeoutMs);
  }
  child.stdio[3].end(JSON.stringify({ code: args.code, workdir }));
  child.stdin.end(typeof args.stdin === 'string' ? args.stdin : '');
}

function parse(line) {
  let request;
  try {
    request = JSON.parse(line);
  } catch (error) {
    return { frame: failure('', 'bad_request', `malformed request: ${error.message}`) };
  }
  if (!request || typeof request.id !== 'string') {
    return { frame: failure('', 'bad_request', 'malformed request: no id') };
  }
  if (String(request.protocol || '').split('.')[0] !== '1') {
    return { frame: failure(request.id, 'unsupported_protocol', 'this skill speaks protocol 1.x') };
  }
  if (request.action !== 'run') {
    return { frame: failure(request.id, 'unknown_action', `no action ${JSON.stringify(request.action)}; this skill has: run`) };
  }
  return { request };
}

let input = '';
const take = (line) => {
  input = null;
  process.stdin.pause();
  const parsed = parse(line);
  if (parsed.frame) refuse(parsed.frame);
  run(parsed.request);
};
process.stdin.setEncoding('utf8');
process.stdin.on('data', (data) => {
  if (input === null) return;
  input += data;
  const end = input.indexOf('\n');
  if (end !== -1) take(input.slice(0, end));
});
// A request without its line break is still the request; no request at all ends the
// runner and the waiting code process with it.
process.stdin.on('end', () => {
  if (input === null) return;
  if (input.trim() === '') {
    killGroup();
    process.exit(0);
  }
  take(input);
});
