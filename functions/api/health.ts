/** GET /health: 200 `{"status":"ok"}` while the API answers (no key needed, no store touched). */
import type { Logger } from '@aws-lambda-powertools/logger';
import type { HealthAnswer } from '../contract/api.ts';
import { type ApiHandler, guarded, json } from './http.ts';

const OK: HealthAnswer = { status: 'ok' };

export function createHealthHandler(logger: Logger): ApiHandler {
  return guarded(logger, async () => json(200, OK));
}
