/**
 * Habits every `tandem` command shares: data on stdout, narration on stderr,
 * `--json` prints exactly one JSON document, and stable exit codes (0 ok,
 * 1 failure, 2 usage) whatever the output mode.
 */

import Table from 'cli-table3';
import { type Command, type CommanderError, Option } from 'commander';
import { ApiClient, ApiError, resolveTarget, UnreachableError } from './client.ts';

export const EXIT_OK = 0;
export const EXIT_FAILURE = 1;
export const EXIT_USAGE = 2;

/** A mistake in how the command was called (bad flag value, missing argument): exit code 2. */
export class UsageError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'UsageError';
  }
}

/** A failure already reported on stderr; only its exit code is left to apply. */
export class ReportedFailure extends Error {
  constructor(readonly exitCode: number) {
    super(`exit ${exitCode}`);
    this.name = 'ReportedFailure';
  }
}

export interface TargetFlags {
  readonly url?: string;
  readonly apiKey?: string;
  readonly dataDir?: string;
}

/** Adds `--url`, `--api-key` and `--data-dir` (where the local cloud keeps its key) to a command. */
export function withTarget(cmd: Command): Command {
  return cmd
    .addOption(new Option('--url <url>', 'API base URL').env('TANDEM_API_URL').default(undefined, 'http://localhost:3000'))
    .addOption(new Option('--api-key <key>', 'API key (x-api-key)').env('TANDEM_API_KEY'))
    .addOption(
      new Option('--data-dir <dir>', "the local cloud's data directory, to read its saved API key")
        .env('TANDEM_DATA_DIR')
        .default(undefined, '.tandem'),
    );
}

export function clientFor(flags: TargetFlags): ApiClient {
  return new ApiClient(resolveTarget({ url: flags.url, apiKey: flags.apiKey, dataDir: flags.dataDir }));
}

/**
 * Makes usage errors exit 2 and help exit 0. Commander exits 1 on every error
 * by default, and a command added with `program.command()` inherits the
 * program's handler only at creation time, so each command sets its own.
 */
export function usageExits(cmd: Command): Command {
  return cmd.exitOverride((err: CommanderError) => {
    process.exit(err.exitCode === 0 ? EXIT_OK : EXIT_USAGE);
  });
}

export function narrate(line: string): void {
  process.stderr.write(`${line}\n`);
}

export function printJson(value: unknown): void {
  process.stdout.write(`${JSON.stringify(value, null, 2)}\n`);
}

/** A plain table for stdout (no colours, so it pipes cleanly). */
export function renderTable(head: readonly string[], rows: readonly (readonly unknown[])[], align?: readonly ('left' | 'right')[]): string {
  const table = new Table({
    head: [...head],
    style: { head: [], border: [], compact: true },
    ...(align ? { colAligns: [...align] } : {}),
  });
  for (const r of rows) table.push(r.map(cell));
  return table.toString();
}

/** Text of one table cell: numbers as they came, null as an empty cell. */
export function cell(v: unknown): string {
  if (v === null || v === undefined) return '';
  if (typeof v === 'object') return JSON.stringify(v);
  return String(v);
}

/**
 * Wraps a command action: errors become one line on stderr and the right
 * exit code (usage 2, anything else 1). Sets `process.exitCode` rather than
 * exiting, so stdout is flushed before the process ends.
 */
export function action<A extends unknown[]>(fn: (...args: A) => Promise<void> | void): (...args: A) => Promise<void> {
  return async (...args: A) => {
    try {
      await fn(...args);
    } catch (e) {
      if (e instanceof ReportedFailure) {
        process.exitCode = e.exitCode;
        return;
      }
      if (e instanceof UsageError) {
        narrate(`tandem: ${e.message}`);
        narrate('(run with --help for usage)');
        process.exitCode = EXIT_USAGE;
        return;
      }
      if (e instanceof ApiError || e instanceof UnreachableError) {
        narrate(`tandem: ${e.message}`);
      } else {
        narrate(`tandem: ${(e as Error)?.message ?? String(e)}`);
      }
      process.exitCode = EXIT_FAILURE;
    }
  };
}

/** Parses a whole positive number flag, or throws a UsageError naming it. */
export function positiveInt(flag: string, value: string): number {
  const n = Number(value);
  if (!/^\d+$/.test(value) || !Number.isSafeInteger(n) || n < 1)
    throw new UsageError(`${flag} must be a whole number >= 1, received "${value}"`);
  return n;
}
