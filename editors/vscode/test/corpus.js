#!/usr/bin/env node
// The repository's corpus of pipeline files, for the TextMate snapshot tests.
//
// vscode-tmgrammar-snap keeps `FILE.snap` beside `FILE`, and the corpus lives
// outside this folder (examples/, tests/fixtures/), so `sync` copies every
// corpus file to test/snapshots/corpus/<its path in the repository> (the
// copies are not committed; the .snap files are). A snapshot records the
// source lines, so a changed corpus file fails the test until its snapshot
// is updated with `npm run snap:update`.
//
//   node test/corpus.js sync            copy; fail on a missing or stale .snap
//   node test/corpus.js sync --update   copy; remove stale .snap files
//   node test/corpus.js list            print the corpus, one path a line
//
// The corpus: examples/**/*.pipeline and every file under tests/fixtures/
// except Markdown. Keep it in step with editors/scripts/compare-grammars.py.
//
// A few files cannot have a vscode-tmgrammar-snap snapshot, for the reasons
// in OWN_FORMAT: their tokens are kept instead in
// test/snapshots/tokens/<path>.tokens, a listing made by test/tokenize.js
// (lines split as VS Code splits them; a digest when there are more than
// MAX_LISTED tokens), and compared by test/textmate.test.js.

'use strict';

const fs = require('fs');
const path = require('path');

const ROOT = path.resolve(__dirname, '..', '..', '..');
const SNAPSHOTS = path.join(__dirname, 'snapshots', 'corpus');
const TOKENS = path.join(__dirname, 'snapshots', 'tokens');

// A snapshot larger than this is too big to review or commit: the .snap
// format repeats the line up to each token, so a long line of many tokens
// grows with the square of its length.
const MAX_SNAP_BYTES = 256 * 1024;

/** Corpus files whose tokens are kept in the own format, and why. */
const OWN_FORMAT = {
  'tests/fixtures/malformed/lone_cr.pipeline':
    'a lone CR ends a line in VS Code (and in pest); vscode-tmgrammar-snap does not split lines there',
  'tests/fixtures/malformed/long_line_of_values.pipeline': 'its .snap would be 32 MB (one line of 4,000 values)',
  'tests/fixtures/malformed/many_or.pipeline': 'its .snap would be 9 MB (one line of 257 `||`)',
  'tests/fixtures/malformed/edge/or_at_limit.pipeline': 'its .snap would be 7 MB (one line of 256 `||`)',
  'tests/fixtures/malformed/many_and.pipeline': 'its .snap would be 3 MB (one line of 257 `&&`)',
};

function walk(dir) {
  const out = [];
  if (!fs.existsSync(dir)) {
    return out;
  }
  for (const entry of fs.readdirSync(dir, { withFileTypes: true })) {
    const full = path.join(dir, entry.name);
    if (entry.isDirectory()) {
      out.push(...walk(full));
    } else if (entry.isFile()) {
      out.push(full);
    }
  }
  return out;
}

/** Corpus files, relative to the repository root, sorted. */
function listCorpus() {
  const examples = walk(path.join(ROOT, 'examples')).filter((f) => f.endsWith('.pipeline'));
  const fixtures = walk(path.join(ROOT, 'tests', 'fixtures')).filter((f) => !f.endsWith('.md'));
  return [...examples, ...fixtures].map((f) => path.relative(ROOT, f).split(path.sep).join('/')).sort();
}

/** Where the copy of a corpus file goes: the snapshot tool picks files by the `.pipeline` extension. */
function copyPath(rel) {
  const name = rel.endsWith('.pipeline') ? rel : `${rel}.pipeline`;
  return path.join(SNAPSHOTS, ...name.split('/'));
}

/** A lone carriage return (not part of CRLF). */
function hasLoneCr(file) {
  return /\r(?!\n)/.test(fs.readFileSync(file, 'latin1'));
}

function tokensPath(rel) {
  return path.join(TOKENS, ...`${rel}.tokens`.split('/'));
}

function sync(update) {
  const corpus = listCorpus();
  if (corpus.length === 0) {
    throw new Error(`no corpus files found under ${ROOT}`);
  }
  const problems = [];
  for (const rel of Object.keys(OWN_FORMAT)) {
    if (!corpus.includes(rel)) {
      problems.push(`OWN_FORMAT in test/corpus.js lists ${rel}, which is not in the corpus`);
    }
  }
  const wanted = new Set();
  const missing = [];
  for (const rel of corpus) {
    if (OWN_FORMAT[rel]) {
      continue;
    }
    if (hasLoneCr(path.join(ROOT, rel))) {
      problems.push(`${rel} has a lone CR, which vscode-tmgrammar-snap cannot snapshot: add it to OWN_FORMAT in test/corpus.js`);
    }
    const dest = copyPath(rel);
    wanted.add(dest);
    fs.mkdirSync(path.dirname(dest), { recursive: true });
    fs.copyFileSync(path.join(ROOT, rel), dest);
    if (!fs.existsSync(`${dest}.snap`)) {
      missing.push(rel);
    }
  }
  const stale = [];
  for (const file of walk(SNAPSHOTS)) {
    const source = file.endsWith('.snap') ? file.slice(0, -'.snap'.length) : file;
    if (!wanted.has(source)) {
      stale.push(path.relative(__dirname, file));
      if (update || !file.endsWith('.snap')) {
        fs.rmSync(file);
      }
    }
  }
  if (!update && missing.length > 0) {
    problems.push(
      `corpus files without a TextMate snapshot (run \`npm run snap:update\` in editors/vscode and review the new .snap files):\n  ${missing.join('\n  ')}`,
    );
  }
  const staleSnaps = stale.filter((f) => f.endsWith('.snap'));
  if (!update && staleSnaps.length > 0) {
    problems.push(
      `snapshots of files that are no longer in the corpus (run \`npm run snap:update\`):\n  ${staleSnaps.join('\n  ')}`,
    );
  }
  if (problems.length > 0) {
    console.error(problems.join('\n'));
    process.exit(1);
  }
  console.log(`corpus: ${corpus.length} files copied to ${path.relative(process.cwd(), SNAPSHOTS) || '.'}`);
}

module.exports = { listCorpus, copyPath, tokensPath, ROOT, OWN_FORMAT, MAX_SNAP_BYTES };

if (require.main === module) {
  const [command, flag] = process.argv.slice(2);
  if (command === 'sync') {
    sync(flag === '--update');
  } else if (command === 'tokens') {
    // Writes the own-format token listings (`npm run snap:update` does).
    const { renderTokens } = require('./tokenize');
    (async () => {
      for (const rel of Object.keys(OWN_FORMAT)) {
        const dest = tokensPath(rel);
        fs.mkdirSync(path.dirname(dest), { recursive: true });
        fs.writeFileSync(dest, await renderTokens(rel, fs.readFileSync(path.join(ROOT, rel))));
        console.log(`Writing tokens ${path.relative(process.cwd(), dest)}`);
      }
    })().catch((err) => {
      console.error(err);
      process.exit(1);
    });
  } else if (command === 'list') {
    for (const rel of listCorpus()) {
      console.log(rel);
    }
  } else {
    console.error('usage: node test/corpus.js sync [--update] | tokens | list');
    process.exit(2);
  }
}
