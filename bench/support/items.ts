/**
 * DynamoDB items a batch version wrote into the batch-view table: block items (core/keys.ts) hold
 * many rows each, so benches report items beside the run item's rows `written`.
 */
import { type AttributeValue, type DynamoDBClient, ScanCommand } from '@aws-sdk/client-dynamodb';

/** Items of the batch-view table written by `version` (a Scan counting; a bench's local table only). */
export async function versionItems(ddb: DynamoDBClient, table: string, version: number): Promise<number> {
  let n = 0;
  let start: Record<string, AttributeValue> | undefined;
  do {
    const page = await ddb.send(
      new ScanCommand({
        TableName: table,
        Select: 'COUNT',
        FilterExpression: '#v = :v',
        ExpressionAttributeNames: { '#v': 'version' },
        ExpressionAttributeValues: { ':v': { N: String(version) } },
        ...(start && { ExclusiveStartKey: start }),
      }),
    );
    n += page.Count ?? 0;
    start = page.LastEvaluatedKey;
  } while (start);
  return n;
}
