/**
 * `tandem local`: the local cloud (local/cloud.ts) in the foreground, with the
 * contract's flags. Prints where the API, the dashboard and the key are;
 * Ctrl-C (SIGINT) or SIGTERM stops everything, emulators included.
 */

import { join } from 'node:path';
import type { Command } from 'commander';
import { DEFAULT_DATA_DIR } from '../../local/endpoints.ts';
import { action, narrate, UsageError, usageExits } from '../output.ts';

interface LocalFlags {
  readonly port: string;
  readonly demo: boolean;
  readonly views?: string;
  readonly window: string;
  readonly batchEvery: string;
  readonly dataDir: string;
  readonly apiKey?: string;
  readonly shards: string;
  readonly demoRate: string;
  readonly host: string;
}

function wholeNumber(flag: string, value: string, min: number, max = Number.MAX_SAFE_INTEGER): number {
  const n = Number(value);
  if (!/^\d+$/.test(value) || n < min || n > max)
    throw new UsageError(`${flag} must be a whole number from ${min} to ${max}, received "${value}"`);
  return n;
}

export function registerLocal(program: Command): void {
  const cmd = program
    .command('local')
    .description("run the local cloud: emulators, Tandem's own handlers, the API and the dashboard on one port")
    .option('--port <n>', 'port of the API and the dashboard (0: any free one)', '3000')
    .option('--no-demo', 'no demo events (empty stores; the demo views are still declared)')
    .option('--views <file>', 'views to declare: a .json file, or a .ts/.js module with a default export (default: the demo views)')
    .option('--window <seconds>', 'arrival window in seconds (must divide a day)', '60')
    .option('--batch-every <seconds|off>', 'seconds between scheduled batch runs, or "off"', '60')
    .option('--data-dir <dir>', 'where emulator data, checkpoints and the API key are kept', DEFAULT_DATA_DIR)
    .option('--api-key <key>', 'the API key (default: the one saved in the data dir, else a new one)')
    .option('--shards <n>', 'shards of the stream when it is first created', '2')
    .option('--demo-rate <n>', 'demo events per second (kept modest: every event costs CPU and disk in each layer, all day long)', '10')
    .option('--host <address>', 'address to listen on', '127.0.0.1')
    .addHelpText(
      'after',
      '\nExamples:\n  npm start                      # = tandem local, with demo data\n' +
        '  npx tandem local --no-demo --port 4000\n  npx tandem local --views my-views.json --batch-every off\n\n' +
        'Data under --data-dir survives a restart (see docs/local-cloud.md); delete the directory to start afresh.',
    );
  usageExits(cmd);
  cmd.action(
    action(async (flags: LocalFlags) => {
      const port = wholeNumber('--port', flags.port, 0, 65535);
      const windowSeconds = wholeNumber('--window', flags.window, 1, 86400);
      if (86400 % windowSeconds !== 0)
        throw new UsageError(`--window must divide a day (86400 s) evenly, e.g. 10, 60 or 300; received ${windowSeconds}`);
      const batchEverySeconds = flags.batchEvery === 'off' ? null : wholeNumber('--batch-every', flags.batchEvery, 1);
      const shards = wholeNumber('--shards', flags.shards, 1, 16);
      const demoRate = wholeNumber('--demo-rate', flags.demoRate, 1, 1000);
      // Loaded here so `tandem --help` and the other commands start fast.
      const [{ shownPath, startLocalCloud }, { kinesisEngine }] = await Promise.all([
        import('../../local/cloud.ts'),
        import('../../local/emulators.ts'),
      ]);
      narrate(`tandem local: starting emulators (${kinesisEngine()}, dynalite, s3rver)...`);
      let fatal: ((e: Error) => void) | undefined;
      const cloud = await startLocalCloud({
        onFatal: (e) => fatal?.(e),
        port,
        demo: flags.demo,
        ...(flags.views ? { viewsFile: flags.views } : {}),
        windowSeconds,
        batchEverySeconds,
        dataDir: flags.dataDir,
        ...(flags.apiKey ? { apiKey: flags.apiKey } : {}),
        shards,
        demoRate,
        host: flags.host,
        logger: {
          info: (m) => narrate(m),
          warn: (m, ...x) =>
            narrate(`warning: ${m}${x.length ? ` ${x.map((e) => (e instanceof Error ? e.message : String(e))).join(' ')}` : ''}`),
          error: (m, ...x) =>
            narrate(`error: ${m}${x.length ? ` ${x.map((e) => (e instanceof Error ? e.message : String(e))).join(' ')}` : ''}`),
        },
      });
      const lines = [
        `API:       ${cloud.url}`,
        `dashboard: ${cloud.url}/`,
        `API key:   ${cloud.apiKey}` +
          `${cloud.apiKeyGenerated ? '   (new; saved in ' : '   (saved in '}${shownPath(join(cloud.dataDir, 'api-key'))})`,
        `try:       curl -H "x-api-key: ${cloud.apiKey}" ${cloud.url}/views`,
      ];
      process.stdout.write(`${lines.join('\n')}\n`);
      narrate(
        `tandem local: up in ${(cloud.startupMs / 1000).toFixed(1)} s; demo ${flags.demo ? `on (${demoRate} events/s)` : 'off'}; ` +
          `batch ${batchEverySeconds === null ? 'off' : `every ${batchEverySeconds} s`}; ` +
          `data in ${shownPath(cloud.dataDir)}. Ctrl-C stops.`,
      );
      await new Promise<void>((resolve) => {
        let stopping = 0;
        fatal = () => {
          // startLocalCloud has stopped everything and said why.
          process.exitCode = 1;
          resolve();
        };
        const onSignal = (signal: NodeJS.Signals) => {
          if (stopping) {
            // Under `npm start` a Ctrl-C arrives twice (from the terminal and relayed by tsx): only a
            // second press, a moment later, means "now".
            if (Date.now() - stopping < 1000) return;
            narrate(`tandem local: ${signal} again, exiting now`);
            process.exit(130);
          }
          stopping = Date.now();
          narrate(`tandem local: ${signal}, stopping...`);
          cloud.stop().then(
            () => {
              narrate('tandem local: stopped');
              resolve();
            },
            (e) => {
              narrate(`tandem local: error while stopping: ${(e as Error).message}`);
              process.exitCode = 1;
              resolve();
            },
          );
        };
        process.on('SIGINT', onSignal);
        process.on('SIGTERM', onSignal);
      });
    }),
  );
}
