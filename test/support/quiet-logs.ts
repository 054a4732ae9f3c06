import { Logger } from '@nestjs/common';

// Keep test output readable: warnings and errors only. Tests that inspect logs (the canary
// scan, the demo) install their own logger with every level switched on.
Logger.overrideLogger(['warn', 'error', 'fatal']);
