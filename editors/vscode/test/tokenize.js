#!/usr/bin/env node
// Tokenizes files with the TextMate grammar, as VS Code does (vscode-textmate
// and the Oniguruma regex engine), and reports what a highlighter can get
// wrong without throwing: the scopes still open at the end of the file (an
// unclosed string or stage header swallows everything after it) and the
// `invalid.*` scopes it marked.
//
//   node test/tokenize.js --json FILE...   one JSON object per file
//
// Used by test/textmate.test.js and by editors/scripts/compare-grammars.py.

'use strict';

const fs = require('fs');
const path = require('path');
const tm = require('vscode-textmate');
const oniguruma = require('vscode-oniguruma');

const GRAMMAR = path.join(__dirname, '..', 'syntaxes', 'pipeline.tmLanguage.json');
const SCOPE = 'source.pipeline';

let grammarPromise;

function loadGrammar() {
  if (!grammarPromise) {
    const wasm = fs.readFileSync(require.resolve('vscode-oniguruma/release/onig.wasm')).buffer;
    const onigLib = oniguruma.loadWASM(wasm).then(() => ({
      createOnigScanner: (patterns) => new oniguruma.OnigScanner(patterns),
      createOnigString: (s) => new oniguruma.OnigString(s),
    }));
    const registry = new tm.Registry({
      onigLib,
      loadGrammar: async (scopeName) =>
        scopeName === SCOPE ? tm.parseRawGrammar(fs.readFileSync(GRAMMAR, 'utf8'), GRAMMAR) : null,
    });
    grammarPromise = registry.loadGrammar(SCOPE);
  }
  return grammarPromise;
}

/**
 * Tokenizes `text` line by line, as VS Code does (it splits lines at `\r\n`,
 * `\n` and a lone `\r`).
 */
async function tokenizeText(text) {
  const grammar = await loadGrammar();
  const lines = text.split(/\r\n|\r|\n/);
  let stack = tm.INITIAL;
  let lastScopes = [];
  const invalid = [];
  const started = process.hrtime.bigint();
  lines.forEach((line, index) => {
    const result = grammar.tokenizeLine(line, stack, 1000);
    if (result.stoppedEarly) {
      invalid.push({ line: index + 1, column: 1, scope: 'tokenizer stopped early (time limit)' });
    }
    for (const token of result.tokens) {
      const bad = token.scopes.find((scope) => scope.startsWith('invalid.'));
      if (bad) {
        invalid.push({ line: index + 1, column: token.startIndex + 1, scope: bad });
      }
    }
    stack = result.ruleStack;
    const last = result.tokens[result.tokens.length - 1];
    lastScopes = last ? last.scopes : [];
  });
  const millis = Number(process.hrtime.bigint() - started) / 1e6;
  // The rules still open after the last line, named by the scopes of the
  // last token (a rule may have no scope of its own).
  const depth = stack.depth - tm.INITIAL.depth;
  const open = depth > 0 ? [`${depth} rule(s) open: ${lastScopes.slice(1).join(' ') || '(unnamed)'}`] : [];
  return { lines: lines.length, open, invalid, millis };
}

async function tokenizeFile(file) {
  // As VS Code reads a file: UTF-8, invalid bytes replaced.
  return tokenizeText(fs.readFileSync(file).toString('utf8'));
}

// A listing with more tokens than this is replaced by a digest.
const MAX_LISTED = 2000;

/**
 * The own snapshot format (see test/corpus.js): each line (split as VS Code
 * splits lines) and its tokens, `start-end scopes`; past MAX_LISTED tokens,
 * the number of tokens of each scope list and a SHA-256 of the listing.
 */
async function renderTokens(name, bytes) {
  const grammar = await loadGrammar();
  const lines = bytes.toString('utf8').split(/\r\n|\r|\n/);
  let stack = tm.INITIAL;
  const listing = [];
  const counts = new Map();
  let tokens = 0;
  for (const line of lines) {
    listing.push(`> ${JSON.stringify(line)}`);
    const result = grammar.tokenizeLine(line, stack);
    stack = result.ruleStack;
    result.tokens.forEach((token, i) => {
      const end = i + 1 < result.tokens.length ? result.tokens[i + 1].startIndex : line.length;
      const scopes = token.scopes.join(' ');
      listing.push(`  ${token.startIndex}-${end} ${scopes}`);
      counts.set(scopes, (counts.get(scopes) || 0) + 1);
      tokens += 1;
    });
  }
  const head = `# TextMate tokens of ${name}: ${lines.length} lines, ${tokens} tokens (editors/vscode/test/corpus.js)\n`;
  if (tokens <= MAX_LISTED) {
    return `${head}${listing.join('\n')}\n`;
  }
  const digest = require('crypto').createHash('sha256').update(listing.join('\n')).digest('hex');
  const summary = [...counts.entries()]
    .sort((a, b) => (a[0] < b[0] ? -1 : 1))
    .map(([scopes, n]) => `${String(n).padStart(6)} ${scopes}`);
  return `${head}# too many to list: the number of tokens of each scope list, and a SHA-256 of the listing\n${summary.join('\n')}\nsha256 ${digest}\n`;
}

module.exports = { tokenizeText, tokenizeFile, renderTokens };

if (require.main === module) {
  const args = process.argv.slice(2);
  if (args[0] !== '--json' || args.length < 2) {
    console.error('usage: node test/tokenize.js --json FILE...');
    process.exit(2);
  }
  (async () => {
    const out = [];
    for (const file of args.slice(1)) {
      try {
        out.push({ file, ok: true, ...(await tokenizeFile(file)) });
      } catch (err) {
        out.push({ file, ok: false, error: String(err && err.stack ? err.stack : err) });
      }
    }
    process.stdout.write(`${JSON.stringify(out)}\n`);
  })().catch((err) => {
    console.error(err);
    process.exit(1);
  });
}
