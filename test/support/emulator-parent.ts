/**
 * A parent process for the orphan test: starts the emulators, prints their
 * PIDs as one JSON line, then waits to be killed (SIGKILL: no cleanup runs).
 */
import { startEmulators } from '../../local/emulators.ts';

const set = await startEmulators();
process.stdout.write(`${JSON.stringify({ pids: [set.kinesis.pid, set.dynamodb.pid, set.s3.pid] })}\n`);
setInterval(() => {}, 60_000);
