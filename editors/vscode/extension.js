// VS Code extension for slipway's `.pipeline` files.
//
// Colouring, brackets, snippets and folding are declarative (package.json,
// syntaxes/, language-configuration.json, snippets/). This file only starts
// the language server: `slipway lsp`, spoken to over stdio. What the server
// offers is described in docs/lsp.md.

'use strict';

const vscode = require('vscode');
const { LanguageClient, TransportKind } = require('vscode-languageclient/node');

/** @type {LanguageClient | undefined} */
let client;

/** The command that starts the server: `slipway.path` and `lsp`. */
function serverOptions(config) {
  const command = (config.get('path') || 'slipway').trim() || 'slipway';
  const run = { command, args: ['lsp'], transport: TransportKind.stdio };
  return { run, debug: run };
}

function clientOptions() {
  return {
    documentSelector: [
      { scheme: 'file', language: 'pipeline' },
      { scheme: 'untitled', language: 'pipeline' },
    ],
    synchronize: {
      // Included files change the diagnostics of the files that include them.
      fileEvents: vscode.workspace.createFileSystemWatcher('**/*.pipeline'),
    },
  };
}

async function start() {
  const config = vscode.workspace.getConfiguration('slipway');
  if (config.get('server.enable') === false) {
    return;
  }
  const options = serverOptions(config);
  client = new LanguageClient('slipway', 'slipway language server', options, clientOptions());
  try {
    await client.start();
  } catch (err) {
    const message = err && err.message ? err.message : String(err);
    client = undefined;
    const choice = await vscode.window.showErrorMessage(
      `Could not start \`${options.run.command} lsp\`: ${message}. ` +
        'Install slipway, or set `slipway.path` to its binary.',
      'Open settings',
    );
    if (choice === 'Open settings') {
      await vscode.commands.executeCommand('workbench.action.openSettings', 'slipway.path');
    }
  }
}

async function stop() {
  const running = client;
  client = undefined;
  if (running) {
    await running.stop();
  }
}

/** @param {vscode.ExtensionContext} context */
async function activate(context) {
  context.subscriptions.push(
    vscode.commands.registerCommand('slipway.restartServer', async () => {
      await stop();
      await start();
    }),
    vscode.workspace.onDidChangeConfiguration(async (event) => {
      if (event.affectsConfiguration('slipway.path') || event.affectsConfiguration('slipway.server.enable')) {
        await stop();
        await start();
      }
    }),
  );
  await start();
}

function deactivate() {
  return stop();
}

module.exports = { activate, deactivate, serverOptions, clientOptions };
