/**
 * The mapping's checkpoint file `<checkpointDir>/<name>.json`: the last
 * processed sequence number of each shard (and its arrival), which shards are
 * done, and when the mapping was created. Without a directory the checkpoints
 * live in memory only.
 */
import { mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { LogSink } from '../../functions/adapters/log.ts';

/** The stream a file belongs to: a re-created stream (same name, new ARN or creation time) voids it. */
export interface StreamIdentity {
  name: string;
  arn: string;
  createdAt: number;
}

export interface ShardCheckpoint {
  readonly seq?: string;
  /** Arrival of the checkpointed record, epoch ms. */
  readonly arrival?: number;
  /** The shard is closed and fully processed. */
  readonly done?: boolean;
}

interface MappingCheckpointFile {
  mapping: string;
  stream: StreamIdentity;
  /** When the mapping was first created: a LATEST shard without a checkpoint restarts from here. */
  createdAt: number;
  shards: Record<string, ShardCheckpoint>;
}

export class Checkpoints {
  private file!: MappingCheckpointFile;

  constructor(
    private readonly mapping: string,
    private readonly dir: string | undefined,
    private readonly log: LogSink,
  ) {}

  get path(): string | undefined {
    return this.dir ? join(this.dir, `${this.mapping}.json`) : undefined;
  }

  /** Reads the file of `stream` and writes it back; true when it starts afresh (no file, unreadable, or another stream's). */
  open(stream: StreamIdentity): boolean {
    const loaded = this.load(stream);
    this.file = loaded ?? { mapping: this.mapping, stream, createdAt: Date.now(), shards: {} };
    this.save();
    return loaded === undefined;
  }

  /** When the mapping was first created, epoch ms. */
  get createdAt(): number {
    return this.file.createdAt;
  }

  of(shard: string): ShardCheckpoint | undefined {
    return this.file.shards[shard];
  }

  /** Records `seq` (arrived at `arrival`) as the shard's last processed record. */
  commit(shard: string, seq: string, arrival: number): void {
    this.file.shards[shard] = { seq, arrival };
    this.save();
  }

  /** Marks the shard done: closed, and every record processed. */
  finish(shard: string): void {
    this.file.shards[shard] = { ...this.file.shards[shard], done: true };
    this.save();
  }

  private load(stream: StreamIdentity): MappingCheckpointFile | undefined {
    const path = this.path;
    if (!path) return undefined;
    let f: MappingCheckpointFile;
    try {
      f = JSON.parse(readFileSync(path, 'utf8')) as MappingCheckpointFile;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT')
        this.log.warn(`esm ${this.mapping}: unreadable checkpoint file ${path}, starting afresh`, e);
      return undefined;
    }
    if (f.stream?.arn !== stream.arn || f.stream?.createdAt !== stream.createdAt) {
      // The stream was re-created (e.g. the emulator started without its data): old sequence numbers mean nothing.
      this.log.warn(`esm ${this.mapping}: stream ${stream.name} is not the one checkpointed in ${path}; starting afresh`);
      return undefined;
    }
    return f;
  }

  private save(): void {
    const path = this.path;
    if (!path) return;
    mkdirSync(this.dir!, { recursive: true });
    // Write-then-rename: a crash mid-write never leaves a torn checkpoint.
    const tmp = `${path}.${process.pid}.tmp`;
    writeFileSync(tmp, JSON.stringify(this.file, null, 1));
    renameSync(tmp, path);
  }
}
