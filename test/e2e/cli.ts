/**
 * `npm run test:e2e -- --api <url> --key <key>`: the end-to-end suite
 * (test/e2e/contract.e2e.test.ts) against a deployed Tandem, or, with neither
 * flag nor TANDEM_API_URL, against a local cloud the suite starts. Runs vitest's
 * `e2e` project in a child process with the target in its environment (the key
 * travels there, not on a command line other users can read).
 */
import { spawn } from 'node:child_process';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Command, InvalidArgumentError } from 'commander';
import { E2E_ENV, trimUrl } from './target.ts';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..');

const positiveSeconds = (value: string): string => {
  if (!/^\d+$/.test(value) || Number(value) === 0) throw new InvalidArgumentError('must be a whole number of seconds above 0');
  return value;
};

const program = new Command('test:e2e')
  .description('run the end-to-end suite of the HTTP contract against a Tandem API (default: a local cloud it starts)')
  .option('--api <url>', 'base URL of the API, with the stage in AWS (env TANDEM_API_URL)')
  .option('--key <key>', 'an API key of that deployment (env TANDEM_API_KEY)')
  .option('--query-timeout <seconds>', 'how long to wait for the speed layer to show what was sent', positiveSeconds)
  .option('--batch-timeout <seconds>', 'how long to wait for a batch run that covers what was sent', positiveSeconds)
  .addHelpText(
    'after',
    `
Examples:
  npm run test:e2e                                        # against a local cloud the suite starts
  npm run test:e2e -- --api "$TANDEM_API_URL" --key "$TANDEM_API_KEY"
  TANDEM_API_URL=https://abc123.execute-api.eu-west-1.amazonaws.com/v1 TANDEM_API_KEY=... npm run test:e2e

See docs/development.md, "End-to-end suite".`,
  )
  .showHelpAfterError();
program.parse();
const flags = program.opts<{ api?: string; key?: string; queryTimeout?: string; batchTimeout?: string }>();

const api = flags.api ?? process.env.TANDEM_API_URL;
const key = flags.key ?? process.env.TANDEM_API_KEY;
const env: NodeJS.ProcessEnv = { ...process.env };
delete env[E2E_ENV.url];
delete env[E2E_ENV.key];
if (api) {
  if (!/^https?:\/\//.test(api)) program.error(`--api must be an http(s) URL, received "${api}"`, { exitCode: 2 });
  if (!key) program.error('--api needs --key (or TANDEM_API_KEY): every route but /health needs an API key', { exitCode: 2 });
  env[E2E_ENV.url] = trimUrl(api);
  env[E2E_ENV.key] = key;
  process.stderr.write(`test:e2e: target ${trimUrl(api)}\n`);
} else {
  process.stderr.write('test:e2e: no --api and no TANDEM_API_URL: starting a local cloud for the suite\n');
}
if (flags.queryTimeout) env[E2E_ENV.queryTimeout] = flags.queryTimeout;
if (flags.batchTimeout) env[E2E_ENV.batchTimeout] = flags.batchTimeout;

const child = spawn(process.execPath, [join(ROOT, 'node_modules/vitest/vitest.mjs'), 'run', '--project', 'e2e'], {
  cwd: ROOT,
  env,
  stdio: 'inherit',
});
for (const signal of ['SIGINT', 'SIGTERM'] as const) process.on(signal, () => child.kill(signal));
child.on('exit', (code, signal) => {
  process.exit(code ?? (signal ? 1 : 0));
});
