// The TextMate grammar on every corpus file and sample: it must tokenize
// each one (the snapshots pin down how), and end files that are valid with
// no rule left open: an unclosed string or stage header would colour the
// rest of the file wrongly. editors/scripts/compare-grammars.py checks the
// same against pest's verdict on every file.

'use strict';

const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');
const { test } = require('node:test');

const { listCorpus, tokensPath, ROOT, OWN_FORMAT, MAX_SNAP_BYTES } = require('./corpus');
const { renderTokens, tokenizeFile, tokenizeText } = require('./tokenize');

const SAMPLES = path.join(__dirname, 'snapshots', 'samples');

// Files the language reference says are valid.
const VALID = /^(examples\/|tests\/fixtures\/ok\/|tests\/fixtures\/malformed\/edge\/)/;

test('every corpus file tokenizes', async () => {
  const corpus = listCorpus();
  assert.ok(corpus.length > 0);
  for (const rel of corpus) {
    const result = await tokenizeFile(path.join(ROOT, rel));
    const stopped = result.invalid.filter((i) => i.scope.startsWith('tokenizer stopped'));
    assert.deepEqual(stopped, [], `${rel}: the tokenizer gave up`);
    if (VALID.test(rel)) {
      assert.deepEqual(result.open, [], `${rel}: rules still open at the end`);
    }
  }
});

test('the files kept in the own format match their token listings', async () => {
  for (const rel of Object.keys(OWN_FORMAT)) {
    const file = tokensPath(rel);
    assert.ok(fs.existsSync(file), `${rel}: no ${path.relative(ROOT, file)} (npm run snap:update)`);
    const actual = await renderTokens(rel, fs.readFileSync(path.join(ROOT, rel)));
    assert.equal(actual, fs.readFileSync(file, 'utf8'), `${rel}: tokens changed (npm run snap:update, then review)`);
  }
});

test('no snapshot is too large to review', () => {
  const walk = (dir) =>
    fs.readdirSync(dir, { withFileTypes: true }).flatMap((e) =>
      e.isDirectory() ? walk(path.join(dir, e.name)) : [path.join(dir, e.name)],
    );
  for (const snap of walk(path.join(__dirname, 'snapshots')).filter((f) => f.endsWith('.snap'))) {
    const size = fs.statSync(snap).size;
    assert.ok(
      size <= MAX_SNAP_BYTES,
      `${path.relative(__dirname, snap)} is ${size} bytes: add its file to OWN_FORMAT in test/corpus.js`,
    );
  }
});

test('every sample ends at the top level', async () => {
  for (const name of fs.readdirSync(SAMPLES).filter((f) => f.endsWith('.pipeline'))) {
    const result = await tokenizeFile(path.join(SAMPLES, name));
    assert.deepEqual(result.open, [], `${name}: rules still open at the end`);
  }
});

test('a lone carriage return ends a line, as in VS Code and pest', async () => {
  const result = await tokenizeText('env {\r  A = "1"\r}\r');
  assert.deepEqual(result.open, []);
  assert.equal(result.lines, 4);
});

test('an unclosed triple-quoted string stays open', async () => {
  const result = await tokenizeText('stage a {\n  run """\n    echo\n}\n');
  assert.equal(result.open.length, 1);
  assert.match(result.open[0], /string\.quoted\.triple/);
});
