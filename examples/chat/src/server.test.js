'use strict';

const assert = require('node:assert/strict');
const { after, before, test } = require('node:test');

const { createServer } = require('./server');

let server;
let base;

before(async () => {
  server = createServer({ room: 'test', limit: 2 });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  base = `http://127.0.0.1:${server.address().port}`;
});

after(() => new Promise((resolve) => server.close(resolve)));

function request(method, path, body) {
  const http = require('node:http');
  return new Promise((resolve, reject) => {
    const req = http.request(base + path, { method, headers: { 'Content-Type': 'application/json' } }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (c) => (text += c));
      res.on('end', () => resolve({ status: res.statusCode, text }));
    });
    req.on('error', reject);
    req.end(body === undefined ? undefined : JSON.stringify(body));
  });
}

test('healthz answers ok', async () => {
  const res = await request('GET', '/healthz');
  assert.equal(res.status, 200);
  assert.equal(res.text, 'ok\n');
});

test('messages are posted and listed, oldest first, up to the limit', async () => {
  for (const text of ['one', 'two', 'three']) {
    const res = await request('POST', '/messages', { user: 'ada', text });
    assert.equal(res.status, 201);
  }
  const res = await request('GET', '/messages');
  assert.equal(res.status, 200);
  const body = JSON.parse(res.text);
  assert.equal(body.room, 'test');
  assert.deepEqual(body.messages.map((m) => m.text), ['two', 'three']);
});

test('a message needs a user and some text', async () => {
  const res = await request('POST', '/messages', { user: 'ada', text: '  ' });
  assert.equal(res.status, 400);
});

test('unknown paths are 404', async () => {
  const res = await request('GET', '/nope');
  assert.equal(res.status, 404);
});
