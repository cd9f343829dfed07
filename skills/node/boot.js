'use strict';
// The node skill's code process: started by the runner before the request, it waits on
// fd 3 for {code, workdir}, then runs the code as `node -e` would (CommonJS, `require`
// from the work directory), with stdin, stdout and stderr its own pipes to the runner.
// It then exits as any Node program does: when nothing is left to do, or at
// process.exit(), or with 1 after an uncaught exception.

const fs = require('fs');
const path = require('path');
const Module = require('module');

// Writes to stdout and stderr block while the runner's pipe is full, as a file's would:
// otherwise code that prints in a loop never yielding to the event loop queues its
// output in memory until the memory limit, instead of meeting the output bound.
for (const stream of [process.stdout, process.stderr]) {
  if (stream._handle && typeof stream._handle.setBlocking === 'function') {
    stream._handle.setBlocking(true);
  }
}

const chunks = [];
const control = fs.createReadStream(null, { fd: 3 });
control.on('data', (chunk) => chunks.push(chunk));
control.on('end', () => {
  const { code, workdir } = JSON.parse(Buffer.concat(chunks).toString('utf8'));
  process.chdir(workdir);
  process.argv = [process.execPath];
  const filename = path.join(workdir, '[eval]');
  const main = new Module(filename, null);
  main.filename = filename;
  main.paths = Module._nodeModulePaths(workdir);
  process.mainModule = main;
  require.main = main;
  main._compile(code, filename);
});
