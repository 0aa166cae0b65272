import { configDefaults, defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['src/**/*.test.ts', 'test/**/*.test.ts'],
    // suites that need real outside software (Debian packages that .ci/run
    // installs: DNS/DHCP servers, Open vSwitch, OpenStack, kubectl, Chromium…)
    // run through their own npm scripts with vitest.real.config.ts
    exclude: [...configDefaults.exclude, 'test/real/**', 'test/e2e/**'],
    globalSetup: ['test/support/global-setup.ts'],
    testTimeout: 60_000,
    hookTimeout: 120_000,
    pool: 'forks',
    reporters: process.env.CI ? ['default'] : ['default'],
  },
});
