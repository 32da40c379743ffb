'use strict';

// A chat room over HTTP, kept in memory:
//   GET  /healthz   200 "ok" (the Deployment's readiness probe)
//   GET  /messages  the messages, oldest first
//   POST /messages  {"user": "...", "text": "..."} adds one
// Settings come from the environment (the ConfigMap in deploy/k8s/).

const http = require('node:http');

const MAX_BODY = 16 * 1024;

function createServer(options = {}) {
  const room = options.room || process.env.CHAT_ROOM || 'lobby';
  const limit = Number(options.limit || process.env.CHAT_HISTORY || 100);
  const messages = [];

  return http.createServer((req, res) => {
    const url = new URL(req.url, 'http://localhost');
    if (url.pathname === '/healthz') {
      return send(res, 200, 'text/plain', 'ok\n');
    }
    if (url.pathname === '/messages' && req.method === 'GET') {
      return json(res, 200, { room, messages });
    }
    if (url.pathname === '/messages' && req.method === 'POST') {
      return readBody(req, (err, body) => {
        if (err) return json(res, 413, { error: err.message });
        let msg;
        try {
          msg = JSON.parse(body);
        } catch {
          return json(res, 400, { error: 'body must be JSON' });
        }
        if (!msg || typeof msg.user !== 'string' || typeof msg.text !== 'string' || !msg.text.trim()) {
          return json(res, 400, { error: 'expected {"user": "...", "text": "..."}' });
        }
        const entry = { user: msg.user, text: msg.text, at: new Date().toISOString() };
        messages.push(entry);
        if (messages.length > limit) messages.splice(0, messages.length - limit);
        return json(res, 201, entry);
      });
    }
    if (url.pathname === '/messages') {
      res.setHeader('Allow', 'GET, POST');
      return json(res, 405, { error: 'method not allowed' });
    }
    return json(res, 404, { error: 'not found' });
  });
}

function readBody(req, done) {
  const chunks = [];
  let size = 0;
  req.on('data', (chunk) => {
    size += chunk.length;
    if (size > MAX_BODY) {
      req.destroy();
      done(new Error('body too large'));
      return;
    }
    chunks.push(chunk);
  });
  req.on('end', () => done(null, Buffer.concat(chunks).toString('utf8')));
}

function json(res, status, value) {
  send(res, status, 'application/json', JSON.stringify(value) + '\n');
}

function send(res, status, type, body) {
  res.writeHead(status, { 'Content-Type': type, 'Content-Length': Buffer.byteLength(body) });
  res.end(body);
}

module.exports = { createServer };

if (require.main === module) {
  const port = Number(process.env.PORT || 8080);
  const server = createServer();
  server.listen(port, () => console.log(`chat listening on :${port}`));
  // Kubernetes sends SIGTERM before it stops a pod: finish open requests.
  process.on('SIGTERM', () => server.close(() => process.exit(0)));
}
