import { pino, type Logger, type LoggerOptions } from 'pino';
import { redactLog } from './secrets.js';

export type { Logger };

/**
 * Secrets never reach logs: every log object goes through redact() (the one
 * list of secret keys, core/secrets.ts, at every depth) and these request
 * header paths are censored too.
 */
export const REDACT_PATHS = ['req.headers.authorization', 'req.headers.cookie'];

export function createLogger(opts: { level?: string; name?: string } & LoggerOptions = {}, destination?: NodeJS.WritableStream): Logger {
  const options: LoggerOptions = {
    ...opts,
    level: opts.level ?? process.env.LOG_LEVEL ?? 'info',
    name: opts.name ?? 'infraflow',
    redact: { paths: REDACT_PATHS, censor: '[redacted]' },
    // the same secret keys as API responses, events and journals (core/secrets.ts), at every depth
    formatters: { ...opts.formatters, log: (obj) => redactLog(opts.formatters?.log ? opts.formatters.log(obj) : obj) },
  };
  return destination ? pino(options, destination) : pino(options);
}

/** A logger that drops everything; the default in tests. */
export const silentLogger: Logger = pino({ level: 'silent' });
