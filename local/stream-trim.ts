/**
 * The stream's retention for kinesalite, which enforces it only lazily: a
 * record past the retention is deleted when a GetRecords call passes over it
 * (actions/getRecords.js), and the event source mappings never read behind
 * their checkpoints, so without this every record ever put would stay on disk.
 * Now and then the local cloud reads each shard from TRIM_HORIZON, a page at a
 * time, until it meets a record inside the retention: the expired ones it
 * passed are gone. kinesalite's disk use then stays about one retention period
 * (24 h) of records.
 */
import { GetRecordsCommand, GetShardIteratorCommand, type KinesisClient, ListShardsCommand } from '@aws-sdk/client-kinesis';

/** Records read per GetRecords call: small, since reading live records is the waste of a trim. */
const PAGE = 1000;
/** Pages per shard and trim: 200,000 expired records a shard, far more than a sweep interval adds. */
const MAX_PAGES = 200;

/** Reads every shard from its oldest record up to the first one inside the retention; returns the pages read. */
export async function trimStream(kinesis: KinesisClient, streamName: string): Promise<number> {
  let pages = 0;
  let next: string | undefined;
  do {
    const listed = await kinesis.send(new ListShardsCommand(next ? { NextToken: next } : { StreamName: streamName }));
    for (const s of listed.Shards ?? []) {
      let iterator = (
        await kinesis.send(new GetShardIteratorCommand({ StreamName: streamName, ShardId: s.ShardId!, ShardIteratorType: 'TRIM_HORIZON' }))
      ).ShardIterator;
      for (let p = 0; iterator && p < MAX_PAGES; p++) {
        const got = await kinesis.send(new GetRecordsCommand({ ShardIterator: iterator, Limit: PAGE }));
        pages++;
        // A live record: everything after it is younger (a shard is in arrival order).
        if ((got.Records?.length ?? 0) > 0) break;
        iterator = got.NextShardIterator;
      }
    }
    next = listed.NextToken;
  } while (next);
  return pages;
}
