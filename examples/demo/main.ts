/**
 * Entry point of the demo: `npm start` builds this project and runs this file.
 * Reads SESSION_KEYS, SESSION_ACTIVE_KEY, SESSION_STORAGE_URL, NODE_ENV, PORT and HOST from the
 * environment (each explained in config/demo.env.example).
 */
import { Logger } from '@nestjs/common';
import { startDemo } from './bootstrap.js';

const logger = new Logger('Demo');

try {
  await startDemo();
} catch (error) {
  // Startup errors (missing keys, a bad key, a busy port) say what to set; print them whole.
  const message = error instanceof Error ? error.message : String(error);
  for (const line of message.split('\n')) logger.error(line);
  process.exit(1);
}
