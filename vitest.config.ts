import { defineConfig } from 'vitest/config';

// Four projects: `unit` (pure logic, no servers: `npm run test:unit`),
// `construct` (CDK synthesis and assertions), `integration` (real emulators) and
// `e2e` (the HTTP contract against a target: a local cloud its global setup starts,
// or the one `npm run test:e2e -- --api … --key …` names).
export default defineConfig({
  test: {
    env: { AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: 'true' },
    projects: [
      { extends: true, test: { name: 'unit', include: ['test/unit/**/*.test.ts'], testTimeout: 60_000 } },
      { extends: true, test: { name: 'construct', include: ['test/construct/**/*.test.ts'], testTimeout: 180_000, hookTimeout: 180_000 } },
      {
        extends: true,
        test: { name: 'integration', include: ['test/integration/**/*.test.ts'], testTimeout: 180_000, hookTimeout: 120_000 },
      },
      {
        extends: true,
        // Each test sets its own timeout from the suite's deadlines (a deployed batch takes minutes).
        test: { name: 'e2e', include: ['test/e2e/**/*.e2e.test.ts'], globalSetup: ['test/e2e/setup.ts'], testTimeout: 120_000 },
      },
    ],
  },
});
