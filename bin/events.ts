/**
 * What `tandem send` and `tandem backfill` share on the input side: checking the
 * files given, reading events from NDJSON or JSON, and the file of rejected
 * events (one JSON line each: where the event was, the field, the reason, the event).
 */
import { createWriteStream, statSync, type WriteStream } from 'node:fs';
import { createInterface } from 'node:readline';
import type { Readable } from 'node:stream';
import { UsageError } from './output.ts';

/** Where an event was in the input: its NDJSON line (1-based) or its JSON array index (0-based). */
export type Position = { readonly line: number } | { readonly index: number };

export interface Item {
  readonly position: Position;
  /** The event as read (what a rejection reports). */
  readonly event: unknown;
  /** Set when the input itself could not be read as an event (bad JSON line). */
  readonly invalid?: string;
}

export interface Rejection {
  readonly position: Position;
  readonly field: string | null;
  readonly message: string;
  readonly event: unknown;
}

/** A usage error unless `file` is a readable regular file. */
export function checkFile(file: string): void {
  try {
    if (!statSync(file).isFile()) throw new UsageError(`${file} is not a file`);
  } catch (e) {
    if (e instanceof UsageError) throw e;
    throw new UsageError(`cannot read ${file}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
  }
}

/**
 * Reads events from NDJSON (one per line) or from one JSON document (an array,
 * `{"events": [...]}`, or a single event, possibly spread over lines). The mode
 * is chosen from the start of the input so NDJSON streams without being held in
 * memory; a JSON document is read whole.
 */
export async function* readEvents(input: Readable): AsyncGenerator<Item> {
  const lines = createInterface({ input, crlfDelay: Number.POSITIVE_INFINITY });
  let mode: 'undecided' | 'ndjson' | 'document' = 'undecided';
  const held: string[] = [];
  let lineNo = 0;
  for await (const line of lines) {
    lineNo++;
    if (mode === 'document') {
      held.push(line);
      continue;
    }
    const text = line.trim();
    if (mode === 'undecided') {
      if (text === '') {
        held.push(line);
        continue;
      }
      // An array, or an object that does not close on its first line, is one JSON document.
      mode = text.startsWith('[') || (text.startsWith('{') && !parses(text)) ? 'document' : 'ndjson';
      if (mode === 'document') {
        held.push(line);
        continue;
      }
      held.length = 0;
    }
    if (text === '') continue;
    try {
      yield { position: { line: lineNo }, event: JSON.parse(text) };
    } catch (e) {
      yield { position: { line: lineNo }, event: text, invalid: `line ${lineNo} is not valid JSON: ${(e as Error).message}` };
    }
  }
  if (mode !== 'document') return;
  let doc: unknown;
  try {
    doc = JSON.parse(held.join('\n'));
  } catch (e) {
    throw new Error(`the input is neither NDJSON nor one JSON document: ${(e as Error).message}`);
  }
  const events = Array.isArray(doc)
    ? doc
    : doc && typeof doc === 'object' && Array.isArray((doc as { events?: unknown }).events)
      ? (doc as { events: unknown[] }).events
      : [doc];
  for (let i = 0; i < events.length; i++) yield { position: { index: i }, event: events[i] };
}

function parses(text: string): boolean {
  try {
    JSON.parse(text);
    return true;
  } catch {
    return false;
  }
}

/** A file created on the first write only, so a clean run leaves none behind. */
class LazyFile {
  private stream: WriteStream | undefined;
  constructor(private readonly path: string) {}
  write(text: string): void {
    this.stream ??= createWriteStream(this.path);
    this.stream.write(text);
  }
  close(): Promise<void> {
    const s = this.stream;
    return s ? new Promise((res, rej) => s.end((err?: Error | null) => (err ? rej(err) : res()))) : Promise.resolve();
  }
}

/** The rejected events' file; `position` is spread so its line or index (and file) are top-level keys. */
export class RejectsFile {
  private readonly file: LazyFile;
  constructor(path: string) {
    this.file = new LazyFile(path);
  }
  write(r: { readonly position: object; readonly field: string | null; readonly message: string; readonly event: unknown }): void {
    this.file.write(`${JSON.stringify({ ...r.position, field: r.field, message: r.message, event: r.event })}\n`);
  }
  close(): Promise<void> {
    return this.file.close();
  }
}
