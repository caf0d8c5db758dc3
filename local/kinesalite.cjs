// kinesalite as the local cloud runs it: `node kinesalite.cjs <kinesalite index.js> <port> [<LevelDB dir>]`.
// Its own CLI binds every interface and has no SIGTERM handling; this binds loopback only and
// closes LevelDB on SIGTERM, so a clean stop leaves a store that opens again without repair.
'use strict';
const [entry, port, path] = process.argv.slice(2);
const kinesalite = require(entry);
const server = kinesalite({ ...(path ? { path } : {}), createStreamMs: 0, deleteStreamMs: 0, updateStreamMs: 100, shardLimit: 100 });
server.on('error', (e) => {
  process.stderr.write(`kinesalite: ${e.code === 'EADDRINUSE' ? `EADDRINUSE: port ${port} is already in use` : e.message}\n`);
  process.exit(1);
});
server.listen(Number(port), '127.0.0.1');
process.on('SIGTERM', () => {
  server.close(() => process.exit(0));
  // Kept-alive SDK connections would hold close() open; the store is closed first either way.
  server.closeAllConnections?.();
});
