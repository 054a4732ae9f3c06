import { defineConfig } from 'vitest/config';

/**
 * `npm run test:contract`: the key provider contract against LocalStack and a dev-mode Vault
 * from docker-compose.yml (profile `keys`). Opt-in; `npm test` leaves test/contract out.
 */
export default defineConfig({
  test: {
    include: ['test/contract/**/*.contract.ts'],
    pool: 'forks',
    setupFiles: ['test/support/quiet-logs.ts'],
    testTimeout: 30_000,
    hookTimeout: 30_000,
  },
});
