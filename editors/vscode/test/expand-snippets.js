#!/usr/bin/env node
// Writes every snippet, expanded with its default values, as a pipeline file,
// so that editors/scripts/compare-grammars.py can check that what a snippet
// inserts is valid syntax for pest and tree-sitter alike.
//
//   node test/expand-snippets.js OUT_DIR
//
// Snippets that go inside a stage are wrapped in one; `when` goes into a
// stage header.

'use strict';

const fs = require('fs');
const path = require('path');

const SNIPPETS = path.join(__dirname, '..', 'snippets', 'pipeline.json');

// Where each snippet goes: at the top level, in a stage body, or in a header.
const PLACE = {
  stage: 'top',
  'stage with script': 'top',
  finally: 'top',
  template: 'top',
  environment: 'top',
  env: 'top',
  pipeline: 'top',
  service: 'stage',
  build: 'stage',
  release: 'stage',
  matrix: 'stage',
  manual: 'stage',
  when: 'header',
};

const VARIABLES = { TM_FILENAME_BASE: 'example' };

/** Expands a snippet body with its defaults (placeholders, first choices, variables). */
function expand(body) {
  let i = 0;
  function parse(stopAtBrace) {
    let out = '';
    while (i < body.length) {
      const c = body[i];
      if (c === '\\' && i + 1 < body.length && '$}\\,|'.includes(body[i + 1])) {
        out += body[i + 1];
        i += 2;
      } else if (c === '}' && stopAtBrace) {
        return out;
      } else if (c === '$' && body[i + 1] === '{') {
        i += 2;
        const head = /^([0-9]+|[A-Za-z_]+)/.exec(body.slice(i))[0];
        i += head.length;
        if (body[i] === ':') {
          i += 1;
          out += parse(true);
          i += 1; // the closing brace
        } else if (body[i] === '|') {
          const end = body.indexOf('|}', i);
          out += body.slice(i + 1, end).split(',')[0];
          i = end + 2;
        } else {
          i += 1; // `}`
          out += /^[0-9]+$/.test(head) ? '' : (VARIABLES[head] ?? '');
        }
      } else if (c === '$' && /[0-9A-Za-z_]/.test(body[i + 1] || '')) {
        const head = /^([0-9]+|[A-Za-z_]+)/.exec(body.slice(i + 1))[0];
        i += 1 + head.length;
        out += /^[0-9]+$/.test(head) ? '' : (VARIABLES[head] ?? '');
      } else {
        out += c;
        i += 1;
      }
    }
    return out;
  }
  return parse(false).replace(/\t/g, '  ');
}

function main() {
  const out = process.argv[2];
  if (!out) {
    console.error('usage: node test/expand-snippets.js OUT_DIR');
    process.exit(2);
  }
  const snippets = JSON.parse(fs.readFileSync(SNIPPETS, 'utf8'));
  fs.mkdirSync(out, { recursive: true });
  for (const [name, snippet] of Object.entries(snippets)) {
    const place = PLACE[name];
    if (!place) {
      throw new Error(`snippet ${JSON.stringify(name)}: say where it goes in PLACE`);
    }
    const text = expand(snippet.body.join('\n'));
    let file;
    if (place === 'top') {
      file = `${text}\n`;
    } else if (place === 'stage') {
      const indented = text.split('\n').map((l) => (l ? `  ${l}` : l)).join('\n');
      file = `stage snippet {\n${indented}\n}\n`;
    } else {
      file = `stage snippet ${text} {\n  manual "go on?"\n}\n`;
    }
    fs.writeFileSync(path.join(out, `${name.replace(/[^A-Za-z0-9]+/g, '-')}.pipeline`), file);
  }
}

module.exports = { expand };

if (require.main === module) {
  main();
}
