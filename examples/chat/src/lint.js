'use strict';

// `npm run lint`: a syntax check of every source file, with no dependencies
// to install. A real project would run eslint here.

const { execFileSync } = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');

const dir = __dirname;
let failed = 0;
for (const name of fs.readdirSync(dir).filter((f) => f.endsWith('.js')).sort()) {
  const file = path.join(dir, name);
  try {
    execFileSync(process.execPath, ['--check', file], { stdio: 'pipe' });
    const text = fs.readFileSync(file, 'utf8');
    if (!text.startsWith("'use strict';")) {
      throw new Error("does not start with 'use strict';");
    }
    console.log(`ok   src/${name}`);
  } catch (err) {
    failed += 1;
    console.error(`FAIL src/${name}: ${String(err.stderr || err.message).trim()}`);
  }
}
process.exit(failed ? 1 : 0);
