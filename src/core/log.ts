import { pino, type Logger, type LoggerOptions } from 'pino';

export type { Logger };

/**
 * Paths redacted from every log line. Secrets never reach logs: anything
 * under these keys is replaced with "[redacted]".
 */
export const REDACT_PATHS = [
  'password', '*.password', 'secret', '*.secret', 'token', '*.token', 'apiKey', '*.apiKey',
  'authorization', '*.authorization', 'req.headers.authorization', 'req.headers.cookie',
  'credentials', '*.credentials', 'kubeconfig', '*.kubeconfig', 'privateKey', '*.privateKey',
];

export function createLogger(opts: { level?: string; name?: string } & LoggerOptions = {}): Logger {
  return pino({
    level: opts.level ?? process.env.LOG_LEVEL ?? 'info',
    name: opts.name ?? 'infraflow',
    redact: { paths: REDACT_PATHS, censor: '[redacted]' },
    ...opts,
  });
}

/** A logger that drops everything; the default in tests. */
export const silentLogger: Logger = pino({ level: 'silent' });
