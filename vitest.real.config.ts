import { defineConfig } from 'vitest/config';

/**
 * The real-backend and browser suites (`test/real/<area>/`, `test/e2e/`):
 * each area's npm script runs `vitest run --config vitest.real.config.ts <its folder>`.
 * They need software that .ci/run installs from Debian; in CI they never skip.
 */
export default defineConfig({
  test: {
    include: ['test/real/**/*.test.ts', 'test/e2e/**/*.test.ts'],
    globalSetup: ['test/support/global-setup.ts'],
    testTimeout: 180_000,
    hookTimeout: 600_000,
    pool: 'forks',
    fileParallelism: false,
  },
});
