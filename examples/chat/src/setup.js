'use strict';

// `npm run setup`: waits until the test database answers, so that `npm test`
// does not race the `db` service container that the pipeline starts beside
// the test stage. DB_HOST and DB_PORT override where it looks; SETUP_TIMEOUT
// (seconds) how long it waits.

const net = require('node:net');

const host = process.env.DB_HOST || 'db';
const port = Number(process.env.DB_PORT || 5432);
const deadline = Date.now() + Number(process.env.SETUP_TIMEOUT || 60) * 1000;

function attempt() {
  const socket = net.connect({ host, port });
  socket.setTimeout(2000);
  socket.once('connect', () => {
    socket.destroy();
    console.log(`setup: ${host}:${port} is up`);
    process.exit(0);
  });
  const retry = (why) => {
    socket.destroy();
    if (Date.now() > deadline) {
      console.error(`setup: ${host}:${port} did not answer (${why})`);
      process.exit(1);
    }
    setTimeout(attempt, 500);
  };
  socket.once('timeout', () => retry('timeout'));
  socket.once('error', (err) => retry(err.code || err.message));
}

console.log(`setup: waiting for ${host}:${port}`);
attempt();
