/**
 * Runs async work over items with at most `limit` calls in flight.
 *
 * Hand-written (no p-limit among the dependencies) because the speed layer
 * needs one property a plain Promise.all lacks: after the first failure no new
 * call starts, and the function settles only once every call in flight has
 * settled. A handler that returned while writes were still in flight could see
 * them land during its retry, and a shard must run one batch at a time.
 */
export async function mapLimit<T, R>(items: readonly T[], limit: number, fn: (item: T, index: number) => Promise<R>): Promise<R[]> {
  const out = new Array<R>(items.length);
  let next = 0;
  let failure: { error: unknown } | undefined;
  const worker = async () => {
    while (!failure && next < items.length) {
      const i = next++;
      try {
        out[i] = await fn(items[i] as T, i);
      } catch (error) {
        failure ??= { error };
      }
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, Math.min(limit, items.length)) }, worker));
  if (failure) throw failure.error;
  return out;
}

/** Splits a list into chunks of at most `size` (DynamoDB batch request limits). */
export function chunks<T>(items: readonly T[], size: number): T[][] {
  const out: T[][] = [];
  for (let i = 0; i < items.length; i += size) out.push(items.slice(i, i + size));
  return out;
}

/** Exponential backoff with full jitter for unprocessed batch items: 25 ms, 50 ms, ... capped at 1 s. */
export function backoff(attempt: number): Promise<void> {
  const ms = Math.random() * Math.min(1000, 25 * 2 ** attempt);
  return new Promise((r) => setTimeout(r, ms));
}
