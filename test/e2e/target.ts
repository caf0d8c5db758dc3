/**
 * Where the end-to-end suite points: the variables test/e2e/cli.ts sets and
 * test/e2e/setup.ts reads. They are the suite's own (not TANDEM_API_URL) so that
 * `npm test` in a shell that exported TANDEM_API_URL for the CLI still runs the
 * suite against a local cloud of its own, as the issue asks, and never against
 * a deployment by accident.
 */
export const E2E_ENV = {
  url: 'TANDEM_E2E_API_URL',
  key: 'TANDEM_E2E_API_KEY',
  /** Seconds to wait for the speed layer to show what was sent (poll until equal, then fail with a diff). */
  queryTimeout: 'TANDEM_E2E_QUERY_TIMEOUT_SECONDS',
  /** Seconds to wait for a batch run whose cutoff covers everything the suite sent. */
  batchTimeout: 'TANDEM_E2E_BATCH_TIMEOUT_SECONDS',
} as const;

export interface E2eTarget {
  /** Base URL without a trailing slash (in AWS with the stage, e.g. `https://…/v1`). */
  readonly url: string;
  readonly key: string;
  /** True when setup.ts started a local cloud for this run. */
  readonly local: boolean;
}

declare module 'vitest' {
  export interface ProvidedContext {
    e2eTarget: E2eTarget;
  }
}

export const trimUrl = (url: string): string => url.replace(/\/+$/, '');
