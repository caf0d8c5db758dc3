/**
 * The `tandem` CLI. Each command lives in bin/commands/<name>.ts and exports a
 * `register<Name>(program)`; this file only assembles them. Run as `npx tandem`
 * (bin/tandem.js loads this file through tsx) or `npm run tandem -- ...`.
 */
import { Command } from 'commander';
import { registerBackfill } from './commands/backfill.ts';
import { registerBatch } from './commands/batch.ts';
import { registerKeys } from './commands/keys.ts';
import { registerLocal } from './commands/local.ts';
import { registerQuery } from './commands/query.ts';
import { registerSend } from './commands/send.ts';
import { registerStatus } from './commands/status.ts';
import { EXIT_OK, EXIT_USAGE } from './output.ts';

// The SDK warns on every start under Node 20; children (the emulators) inherit this too.
process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';

const program = new Command()
  .name('tandem')
  .description('Tandem: real-time and exact historical analytics over one event stream (a Lambda Architecture on AWS)')
  .showHelpAfterError('(run with --help for usage)')
  .exitOverride((err) => process.exit(err.exitCode === 0 ? EXIT_OK : EXIT_USAGE));

registerLocal(program);
registerSend(program);
registerQuery(program);
registerStatus(program);
registerBatch(program);
registerBackfill(program);
registerKeys(program);

await program.parseAsync(process.argv);
