import { existsSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import fastifyStatic from '@fastify/static';

/** The console's build output in this checkout (built by `npm run build:web`, at install). */
export const DEFAULT_CONSOLE_DIR = resolve(fileURLToPath(new URL('../../web/dist', import.meta.url)));

/** Paths the console never answers: the API and the server's own endpoints keep their problem+json 404. */
const NOT_CONSOLE = /^\/(api|docs|openapi\.json|healthz|readyz|metrics)(\/|$|\?)/;

const SECURITY_HEADERS: Record<string, string> = {
  'content-security-policy': "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'self'; form-action 'self'",
  'x-content-type-options': 'nosniff',
  'referrer-policy': 'same-origin',
  'x-frame-options': 'DENY',
};

/**
 * Serves the web console at `/` from its build output: hashed assets with a
 * year of caching, `index.html` (never cached) for every other page of the
 * single-page app. When the build is missing, `/` says how to build it.
 * API paths that match no route keep their problem+json 404.
 */
export async function registerConsole(app: FastifyInstance, dir: string, apiNotFound: (req: FastifyRequest, reply: FastifyReply) => void): Promise<void> {
  const index = join(dir, 'index.html');
  const built = existsSync(index);
  if (built) {
    await app.register(fastifyStatic, {
      root: dir,
      prefix: '/',
      index: false,
      wildcard: false,
      preCompressed: true,
      setHeaders: (res, path) => {
        for (const [k, v] of Object.entries(SECURITY_HEADERS)) res.header(k, v);
        res.header('cache-control', path.includes('/assets/') ? 'public, max-age=31536000, immutable' : 'no-cache');
      },
    });
  }
  let html: string | null = null;
  app.setNotFoundHandler((req, reply) => {
    const path = req.url;
    if ((req.method !== 'GET' && req.method !== 'HEAD') || NOT_CONSOLE.test(path) || /\.[a-z0-9]{1,5}(\?|$)/i.test(path.split('?')[0]!)) {
      apiNotFound(req, reply);
      return;
    }
    for (const [k, v] of Object.entries(SECURITY_HEADERS)) reply.header(k, v);
    reply.header('cache-control', 'no-cache');
    if (!built) {
      reply.code(503).type('text/html; charset=utf-8').send('<!doctype html><html lang="en"><title>Infraflow</title><h1>The console is not built</h1><p>Run <code>npm run build:web</code> (it runs on <code>npm ci</code>), then reload. The API is at <a href="/docs">/docs</a>.</p></html>');
      return;
    }
    html ??= readFileSync(index, 'utf8');
    reply.code(200).type('text/html; charset=utf-8').send(html);
  });
}
