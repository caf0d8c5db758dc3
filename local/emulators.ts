/**
 * The local cloud's emulators as child processes on free loopback ports:
 * kinesalite (Kinesis), dynalite (DynamoDB), s3rver (S3). Readiness is a
 * real call to each service. Children die with their parent (watchdog.cjs).
 *
 * kinesalite, not kinesis-local, by the numbers in docs/local-cloud.md ("Long
 * runs"): kinesis-local keeps every record of its 24 h retention in memory and
 * each put slows as a shard grows; kinesalite keeps records in LevelDB on disk
 * (bounded memory, flat put latency, every acknowledged put durable). kinesis-local
 * stays selectable (`TANDEM_KINESIS_ENGINE=kinesis-local`) so the long-run
 * benchmark can measure both in one run.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync, mkdirSync } from 'node:fs';
import { request as httpRequest } from 'node:http';
import { createRequire } from 'node:module';
import { createServer } from 'node:net';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const require = createRequire(import.meta.url);
const here = dirname(fileURLToPath(import.meta.url));

export type EmulatorName = 'kinesis' | 'dynamodb' | 's3';

export interface EmulatorOptions {
  /** Directory for persistent data; in-memory (or a temp dir for s3rver) when absent. */
  readonly dataDir?: string;
  /** Fixed port; a free one when absent. */
  readonly port?: number;
  /** kinesis-local persists on an interval: this one (e.g. '1s'). Ignored by kinesalite (LevelDB writes every put). */
  readonly persistInterval?: string;
  /**
   * The Kinesis emulator.
   * @default process.env.TANDEM_KINESIS_ENGINE, else 'kinesalite'
   */
  readonly kinesisEngine?: KinesisEngine;
  /** Extra environment for the child process (tests: a shifted clock, see test/support/clock-shift.cjs). */
  readonly env?: Readonly<Record<string, string>>;
  /**
   * Start dynalite as published, without `local/dynalite-iterators.cjs` (its fix for LevelDB
   * iterators left open): for the test and the benchmark that show what the fix is for.
   * @default process.env.TANDEM_DYNALITE_AS_SHIPPED === '1'
   */
  readonly dynaliteAsShipped?: boolean;
}

export type KinesisEngine = 'kinesalite' | 'kinesis-local';

/** The Kinesis emulator to start: an explicit choice, else TANDEM_KINESIS_ENGINE, else kinesalite. */
export function kinesisEngine(explicit?: KinesisEngine): KinesisEngine {
  const e = explicit ?? process.env.TANDEM_KINESIS_ENGINE ?? 'kinesalite';
  if (e !== 'kinesalite' && e !== 'kinesis-local')
    throw new Error(`TANDEM_KINESIS_ENGINE must be kinesalite or kinesis-local, received "${e}"`);
  return e;
}

export interface RunningEmulator {
  readonly name: EmulatorName;
  readonly endpoint: string;
  readonly port: number;
  readonly pid: number;
  readonly process: ChildProcess;
  /** Stops the process: SIGTERM, then SIGKILL after `graceMs`. */
  stop(graceMs?: number): Promise<void>;
  /** Kills the process at once (fault injection). */
  kill(): Promise<void>;
}

export class EmulatorError extends Error {
  constructor(
    readonly emulator: EmulatorName,
    message: string,
  ) {
    super(`${emulator} emulator: ${message}`);
    this.name = 'EmulatorError';
  }
}

/** A free TCP port on loopback (bind to 0, read it, release it). */
export function freePort(): Promise<number> {
  return new Promise((res, rej) => {
    const srv = createServer();
    srv.unref();
    srv.on('error', rej);
    srv.listen(0, '127.0.0.1', () => {
      const port = (srv.address() as { port: number }).port;
      srv.close(() => res(port));
    });
  });
}

function assertPortFree(name: EmulatorName, port: number): Promise<void> {
  return new Promise((res, rej) => {
    const srv = createServer();
    srv.once('error', (e: NodeJS.ErrnoException) =>
      rej(new EmulatorError(name, e.code === 'EADDRINUSE' ? `port ${port} is already in use` : `cannot bind port ${port}: ${e.message}`)),
    );
    srv.listen(port, '127.0.0.1', () => srv.close(() => res()));
  });
}

function packageFile(name: EmulatorName, pkg: string, file: string): string {
  let root: string;
  try {
    root = dirname(require.resolve(`${pkg}/package.json`));
  } catch {
    throw new EmulatorError(name, `package "${pkg}" is not installed (run npm ci)`);
  }
  const p = join(root, file);
  if (!existsSync(p)) throw new EmulatorError(name, `${p} is missing (reinstall "${pkg}")`);
  return p;
}

interface Launch {
  readonly args: string[];
  readonly env: Record<string, string>;
  readonly ready: (endpoint: string) => Promise<boolean>;
}

/**
 * One HTTP request on a connection of its own (`agent: false` sends
 * `Connection: close`): a kept-alive readiness connection would make an
 * emulator's graceful shutdown wait for it (kinesis-local then needs SIGKILL).
 */
function probe(url: string, init: { method?: string; headers?: Record<string, string>; body?: string } = {}): Promise<number> {
  return new Promise((res) => {
    const req = httpRequest(url, { method: init.method ?? 'GET', headers: init.headers, agent: false, timeout: 5000 }, (r) => {
      r.resume();
      r.on('end', () => res(r.statusCode ?? 0));
      r.on('error', () => res(0));
    });
    req.on('error', () => res(0));
    req.on('timeout', () => req.destroy());
    req.end(init.body);
  });
}

async function awsCallReady(endpoint: string, target: string, body: string): Promise<boolean> {
  const status = await probe(endpoint, {
    method: 'POST',
    headers: {
      'content-type': 'application/x-amz-json-1.1',
      'x-amz-target': target,
      authorization: 'AWS4-HMAC-SHA256 Credential=local/20240101/us-east-1/service/aws4_request, SignedHeaders=host, Signature=0',
    },
    body,
  });
  return status > 0 && status < 500;
}

function launchSpec(name: EmulatorName, port: number, opts: EmulatorOptions): Launch {
  switch (name) {
    case 'kinesis': {
      const ready = (ep: string) => awsCallReady(ep, 'Kinesis_20131202.ListStreams', '{}');
      if (kinesisEngine(opts.kinesisEngine) === 'kinesalite') {
        const args = [join(here, 'kinesalite.cjs'), packageFile(name, 'kinesalite', 'index.js'), String(port)];
        if (opts.dataDir) {
          mkdirSync(opts.dataDir, { recursive: true });
          args.push(resolve(opts.dataDir));
        }
        return { args, env: {}, ready };
      }
      const main = packageFile(name, 'kinesis-local', 'main.js');
      const env: Record<string, string> = {
        KINESIS_MOCK_PLAIN_PORT: String(port),
        KINESIS_MOCK_TLS_PORT: String(port + 1),
        KINESIS_MOCK_CERT_PATH: join(dirname(main), 'server.json'),
        CREATE_STREAM_DURATION: '0ms',
        DELETE_STREAM_DURATION: '0ms',
        SPLIT_SHARD_DURATION: '100ms',
        MERGE_SHARDS_DURATION: '100ms',
        UPDATE_SHARD_COUNT_DURATION: '100ms',
        LOG_LEVEL: 'ERROR',
      };
      if (opts.dataDir) {
        mkdirSync(opts.dataDir, { recursive: true });
        Object.assign(env, {
          SHOULD_PERSIST_DATA: 'true',
          LOAD_DATA_IF_EXISTS: 'true',
          PERSIST_PATH: resolve(opts.dataDir),
          PERSIST_INTERVAL: opts.persistInterval ?? '1s',
        });
      }
      return { args: [main], env, ready };
    }
    case 'dynamodb': {
      const cli = packageFile(name, 'dynalite', 'cli.js');
      const asShipped = opts.dynaliteAsShipped ?? process.env.TANDEM_DYNALITE_AS_SHIPPED === '1';
      const args = [
        ...(asShipped ? [] : ['--require', join(here, 'dynalite-iterators.cjs')]),
        cli,
        '--port',
        String(port),
        '--host',
        '127.0.0.1',
        '--createTableMs',
        '0',
        '--deleteTableMs',
        '0',
        '--updateTableMs',
        '0',
      ];
      if (opts.dataDir) {
        mkdirSync(opts.dataDir, { recursive: true });
        args.push('--path', resolve(opts.dataDir));
      }
      return { args, env: {}, ready: (ep) => awsCallReady(ep, 'DynamoDB_20120810.ListTables', '{}') };
    }
    case 's3': {
      const bin = packageFile(name, 's3rver', 'bin/s3rver.js');
      const dir = resolve(opts.dataDir ?? join(process.env.TMPDIR ?? '/tmp', `tandem-s3rver-${process.pid}-${port}`));
      mkdirSync(dir, { recursive: true });
      return {
        args: [bin, '--directory', dir, '--port', String(port), '--address', '127.0.0.1', '--silent', '--no-vhost-buckets'],
        // s3rver answers 500 to ListObjectsV2 past 1,000 keys on Node 20 without the legacy provider.
        env: { NODE_OPTIONS: '--openssl-legacy-provider' },
        ready: async (ep) => {
          const status = await probe(ep);
          return status > 0 && status < 500;
        },
      };
    }
  }
}

/**
 * Starts one emulator and resolves once it answers a real API call. Without a
 * fixed port it picks a free one, and picks again when the emulator still finds
 * its port taken: a free port can be taken by another process between the
 * check and the emulator's bind (kinesis-local also binds port + 1 for TLS).
 */
export async function startEmulator(name: EmulatorName, opts: EmulatorOptions = {}): Promise<RunningEmulator> {
  if (opts.port) {
    await assertPortFree(name, opts.port);
    return startOnPort(name, opts.port, opts);
  }
  for (let attempt = 1; ; attempt++) {
    let port = await freePort();
    while (
      name === 'kinesis' &&
      kinesisEngine(opts.kinesisEngine) === 'kinesis-local' &&
      !(await assertPortFree(name, port + 1).then(
        () => true,
        () => false,
      ))
    )
      port = await freePort();
    try {
      return await startOnPort(name, port, opts);
    } catch (e) {
      if (attempt >= 5 || !(e instanceof EmulatorError && /EADDRINUSE|already in use/i.test(e.message))) throw e;
    }
  }
}

async function startOnPort(name: EmulatorName, port: number, opts: EmulatorOptions): Promise<RunningEmulator> {
  const spec = launchSpec(name, port, opts);
  const child = spawn(process.execPath, ['--require', join(here, 'watchdog.cjs'), ...spec.args], {
    env: { ...process.env, ...spec.env, ...opts.env, TANDEM_PARENT_PID: String(process.pid) },
    stdio: ['pipe', 'ignore', 'pipe'],
    // A process group of its own: Ctrl-C in a terminal signals the whole foreground group,
    // and the emulators must outlive the parent's orderly stop (pollers finishing their batch).
    // The watchdog still ends them when the parent goes.
    detached: true,
  });
  let stderr = '';
  child.stderr?.on('data', (d: Buffer) => {
    stderr = (stderr + d.toString()).slice(-4000);
  });
  let exited: { code: number | null; signal: NodeJS.Signals | null } | undefined;
  const exit = new Promise<void>((res) =>
    child.once('exit', (code, signal) => {
      exited = { code, signal };
      res();
    }),
  );
  const endpoint = `http://127.0.0.1:${port}`;
  const deadline = Date.now() + 60_000;
  while (!(await spec.ready(endpoint))) {
    if (exited)
      throw new EmulatorError(name, `exited during start-up (code ${exited.code}, signal ${exited.signal}): ${stderr.trim().slice(-800)}`);
    // kinesis-local does not exit when a port is taken: it logs and hangs. Fail at once.
    if (Date.now() > deadline || /EADDRINUSE/.test(stderr)) {
      child.kill('SIGKILL');
      await exit;
      throw new EmulatorError(
        name,
        `did not answer on ${endpoint}${Date.now() > deadline ? ' within 60 s' : ''}: ${stderr.trim().slice(-800)}`,
      );
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  const stop = async (graceMs = 3000) => {
    if (exited) return;
    child.kill('SIGTERM');
    const t = setTimeout(() => child.kill('SIGKILL'), graceMs);
    await exit;
    clearTimeout(t);
  };
  return {
    name,
    endpoint,
    port,
    pid: child.pid!,
    process: child,
    stop,
    kill: async () => {
      if (exited) return;
      child.kill('SIGKILL');
      await exit;
    },
  };
}

export interface EmulatorSet {
  readonly kinesis: RunningEmulator;
  readonly dynamodb: RunningEmulator;
  readonly s3: RunningEmulator;
  /** Which Kinesis emulator runs. */
  readonly kinesisEngine: KinesisEngine;
  /** The environment the handlers need to reach these emulators (AWS_ENDPOINT_URL_* and dummy credentials). */
  readonly env: Record<string, string>;
  stop(): Promise<void>;
}

/** Environment that points the AWS SDK at the emulators. */
export function emulatorEnv(e: {
  kinesis: { endpoint: string };
  dynamodb: { endpoint: string };
  s3: { endpoint: string };
}): Record<string, string> {
  return {
    AWS_ENDPOINT_URL_KINESIS: e.kinesis.endpoint,
    AWS_ENDPOINT_URL_DYNAMODB: e.dynamodb.endpoint,
    AWS_ENDPOINT_URL_S3: e.s3.endpoint,
    AWS_REGION: 'us-east-1',
    // s3rver only accepts this access key; dynalite and the Kinesis emulators accept any.
    AWS_ACCESS_KEY_ID: 'S3RVER',
    AWS_SECRET_ACCESS_KEY: 'S3RVER',
    AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: 'true',
  };
}

/**
 * Starts all three emulators in parallel; data under `<dataDir>/{kinesis,dynamodb,s3}` when given.
 * `kinesisPersistInterval`: how often kinesis-local, if chosen, rewrites its whole state file
 * (default 1s); kinesalite ignores it.
 */
export async function startEmulators(
  opts: { dataDir?: string; kinesisPersistInterval?: string; kinesisEngine?: KinesisEngine } = {},
): Promise<EmulatorSet> {
  const sub = (n: string) => (opts.dataDir ? { dataDir: join(opts.dataDir, n) } : {});
  const results = await Promise.allSettled([
    startEmulator('kinesis', {
      ...sub('kinesis'),
      ...(opts.kinesisPersistInterval ? { persistInterval: opts.kinesisPersistInterval } : {}),
      ...(opts.kinesisEngine ? { kinesisEngine: opts.kinesisEngine } : {}),
    }),
    startEmulator('dynamodb', sub('dynamodb')),
    startEmulator('s3', sub('s3')),
  ]);
  const ok = results.flatMap((r) => (r.status === 'fulfilled' ? [r.value] : []));
  const failed = results.find((r) => r.status === 'rejected');
  if (failed) {
    await Promise.all(ok.map((e) => e.stop()));
    throw (failed as PromiseRejectedResult).reason;
  }
  const [kinesis, dynamodb, s3] = ok as [RunningEmulator, RunningEmulator, RunningEmulator];
  return {
    kinesis,
    dynamodb,
    s3,
    kinesisEngine: kinesisEngine(opts.kinesisEngine),
    env: emulatorEnv({ kinesis, dynamodb, s3 }),
    stop: async () => {
      await Promise.all([kinesis.stop(), dynamodb.stop(), s3.stop()]);
    },
  };
}
