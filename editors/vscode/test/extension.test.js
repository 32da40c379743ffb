// Tests of the extension without VS Code: the `vscode` module and the
// language client are replaced by fakes that record what the extension asks
// of them. (Running VS Code itself needs a download these machines cannot
// make.)

'use strict';

const assert = require('node:assert/strict');
const fs = require('node:fs');
const Module = require('node:module');
const path = require('node:path');
const { test, beforeEach } = require('node:test');

const HERE = path.join(__dirname, '..');
const manifest = JSON.parse(fs.readFileSync(path.join(HERE, 'package.json'), 'utf8'));

// ---------------------------------------------------------------- fakes

const state = {};

function reset() {
  state.settings = {};
  state.clients = [];
  state.commands = new Map();
  state.configListeners = [];
  state.errors = [];
  state.failStart = null;
}

class FakeLanguageClient {
  constructor(id, name, serverOptions, clientOptions) {
    Object.assign(this, { id, name, serverOptions, clientOptions, started: false, stopped: false });
    state.clients.push(this);
  }

  async start() {
    if (state.failStart) {
      throw new Error(state.failStart);
    }
    this.started = true;
  }

  async stop() {
    this.stopped = true;
  }
}

const fakeVscode = {
  workspace: {
    getConfiguration(section) {
      assert.equal(section, 'slipway');
      return { get: (key) => state.settings[key] };
    },
    createFileSystemWatcher: (glob) => ({ glob }),
    onDidChangeConfiguration(listener) {
      state.configListeners.push(listener);
      return { dispose() {} };
    },
  },
  commands: {
    registerCommand(name, fn) {
      state.commands.set(name, fn);
      return { dispose() {} };
    },
    executeCommand: async () => undefined,
  },
  window: {
    showErrorMessage: async (message) => {
      state.errors.push(message);
      return undefined;
    },
  },
};

const fakeClientModule = { LanguageClient: FakeLanguageClient, TransportKind: { stdio: 0, ipc: 1 } };

const originalLoad = Module._load;
Module._load = function load(request, parent, isMain) {
  if (request === 'vscode') {
    return fakeVscode;
  }
  if (request === 'vscode-languageclient/node') {
    return fakeClientModule;
  }
  return originalLoad.call(this, request, parent, isMain);
};

const extension = require(path.join(HERE, manifest.main));

function context() {
  return { subscriptions: [] };
}

async function changeConfiguration(key) {
  for (const listener of state.configListeners) {
    await listener({ affectsConfiguration: (k) => k === key });
  }
}

beforeEach(reset);

// ---------------------------------------------------------------- the client

test('starts `slipway lsp` over stdio for pipeline files', async () => {
  await extension.activate(context());
  assert.equal(state.clients.length, 1);
  const client = state.clients[0];
  assert.ok(client.started);
  assert.deepEqual(client.serverOptions.run, { command: 'slipway', args: ['lsp'], transport: 0 });
  assert.deepEqual(client.serverOptions.debug, client.serverOptions.run);
  assert.deepEqual(
    client.clientOptions.documentSelector.map((s) => s.language),
    ['pipeline', 'pipeline'],
  );
  assert.equal(client.clientOptions.synchronize.fileEvents.glob, '**/*.pipeline');
});

test('`slipway.path` names the binary', async () => {
  state.settings.path = '/opt/slipway/bin/slipway';
  await extension.activate(context());
  assert.equal(state.clients[0].serverOptions.run.command, '/opt/slipway/bin/slipway');
});

test('a blank `slipway.path` falls back to `slipway`', async () => {
  state.settings.path = '   ';
  await extension.activate(context());
  assert.equal(state.clients[0].serverOptions.run.command, 'slipway');
});

test('changing `slipway.path` restarts the server with the new binary', async () => {
  await extension.activate(context());
  state.settings.path = './target/debug/slipway';
  await changeConfiguration('slipway.path');
  assert.equal(state.clients.length, 2);
  assert.ok(state.clients[0].stopped);
  assert.ok(state.clients[1].started);
  assert.equal(state.clients[1].serverOptions.run.command, './target/debug/slipway');
});

test('the restart command stops the server and starts a new one', async () => {
  await extension.activate(context());
  await state.commands.get('slipway.restartServer')();
  assert.equal(state.clients.length, 2);
  assert.ok(state.clients[0].stopped);
  assert.ok(state.clients[1].started);
});

test('`slipway.server.enable: false` starts no server', async () => {
  state.settings['server.enable'] = false;
  await extension.activate(context());
  assert.equal(state.clients.length, 0);
});

test('a server that cannot start is reported, with the command', async () => {
  state.failStart = 'spawn slipway ENOENT';
  await extension.activate(context());
  assert.equal(state.errors.length, 1);
  assert.match(state.errors[0], /`slipway lsp`/);
  assert.match(state.errors[0], /ENOENT/);
  assert.match(state.errors[0], /slipway\.path/);
  // Deactivating after a failed start does not throw.
  await extension.deactivate();
});

// ---------------------------------------------------------------- the manifest

test('package.json contributes the pipeline language', () => {
  const [language] = manifest.contributes.languages;
  assert.equal(language.id, 'pipeline');
  assert.deepEqual(language.extensions, ['.pipeline']);
  assert.ok(fs.existsSync(path.join(HERE, language.configuration)));
  assert.ok(manifest.activationEvents.includes('onLanguage:pipeline'));
  const settings = manifest.contributes.configuration.properties;
  assert.equal(settings['slipway.path'].default, 'slipway');
  assert.ok(manifest.contributes.commands.some((c) => c.command === 'slipway.restartServer'));
});

test('the grammar, snippets and language configuration load', () => {
  const [grammar] = manifest.contributes.grammars;
  const tmLanguage = JSON.parse(fs.readFileSync(path.join(HERE, grammar.path), 'utf8'));
  assert.equal(tmLanguage.scopeName, grammar.scopeName);
  assert.equal(grammar.language, 'pipeline');
  const config = JSON.parse(fs.readFileSync(path.join(HERE, 'language-configuration.json'), 'utf8'));
  assert.equal(config.comments.lineComment, '#');
  for (const rule of Object.values(config.indentationRules)) {
    assert.doesNotThrow(() => new RegExp(rule));
  }
  const [snippets] = manifest.contributes.snippets;
  const bodies = JSON.parse(fs.readFileSync(path.join(HERE, snippets.path), 'utf8'));
  for (const name of ['stage', 'template', 'service', 'build', 'release', 'environment']) {
    assert.ok(bodies[name], `snippet ${name}`);
  }
});

test('the engine version suits vscode-languageclient', () => {
  const clientManifest = path.join(HERE, 'node_modules', 'vscode-languageclient', 'package.json');
  const wanted = JSON.parse(fs.readFileSync(clientManifest, 'utf8')).engines.vscode;
  const version = (range) => range.replace(/^[^\d]*/, '').split('.').map(Number);
  const [ourMajor, ourMinor] = version(manifest.engines.vscode);
  const [theirMajor, theirMinor] = version(wanted);
  assert.ok(
    ourMajor > theirMajor || (ourMajor === theirMajor && ourMinor >= theirMinor),
    `engines.vscode ${manifest.engines.vscode} is older than vscode-languageclient's ${wanted}`,
  );
});
