/**
 * `nest-encrypted-sessions/cli`: the package's operator commands (`audit verify`,
 * `purge [--dry-run]`, `jobs status`), to mount on a host's commander program
 * ({@link addEncryptedSessionCommands}) or run as the package's bin ({@link runCli}).
 * `commander` is a dependency of the package; nothing in the package root imports it.
 *
 * @packageDocumentation
 */
export { addEncryptedSessionCommands } from './commands.js';
export { storageFromEnv } from './env-context.js';
export { runCli, type RunCliOptions } from './run-cli.js';
export { CLI_EXIT, type EncryptedSessionCommandsOptions } from './runtime.js';
