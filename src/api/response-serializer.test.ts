import { describe, expect, it } from 'vitest';
import { z } from 'zod';
import { isResponseSerializationError } from 'fastify-type-provider-zod';
import { fastSerializerFor, responseSerializerCompiler } from './server.js';
import { ResourceOut } from './routes/resources.js';

const compile = (schema: z.ZodType, validate = false) => responseSerializerCompiler({ validate })({ schema, method: 'GET', url: '/t' });
const zodWrites = (schema: z.ZodType, data: unknown) => JSON.parse(JSON.stringify(schema.encode(data as never)));

describe('response serializer (fast-json-stringify compiled from the zod schema)', () => {
  it('writes only declared fields, at every depth, like zod', () => {
    const S = z.object({
      a: z.string(),
      inner: z.object({ b: z.number() }).nullable(),
      list: z.array(z.object({ c: z.boolean() })).nullable(),
      opt: z.string().nullable().optional(),
      loose: z.object({ d: z.string() }).loose(),
      rec: z.record(z.string(), z.unknown()),
    });
    const data = { a: 'x', secret: 's', inner: { b: 1, passwordHash: 'h' }, list: [{ c: true, token: 't' }], loose: { d: 'y', extra: 1 }, rec: { k: { deep: [1] } } };
    expect(fastSerializerFor(S)).not.toBeNull();
    const out = JSON.parse(compile(S)(data));
    expect(out).toEqual(zodWrites(S, data));
    expect(JSON.stringify(out)).not.toMatch(/secret|passwordHash|token/);
    expect(out.loose.extra).toBe(1);
    expect(JSON.parse(compile(S)({ ...data, inner: null, list: null }))).toEqual({ ...zodWrites(S, { ...data, inner: null, list: null }) });
  });

  it('writes a literal field\'s actual value (never the schema\'s constant)', () => {
    const S = z.object({ status: z.literal('ok') });
    expect(compile(S)({ status: 'ok' })).toBe('{"status":"ok"}');
    expect(compile(S)({ status: 'broken' })).toBe('{"status":"broken"}');
    expect(() => compile(S, true)({ status: 'broken' })).toThrow();
  });

  it('keeps zod\'s serializer for shapes the compiled one would write differently', () => {
    const union = z.object({ v: z.union([z.object({ k: z.literal('a'), x: z.string() }), z.object({ k: z.literal('b'), y: z.number() })]) });
    expect(fastSerializerFor(union)).toBeNull();
    expect(JSON.parse(compile(union)({ v: { k: 'b', y: 2, hidden: 'h' } }))).toEqual({ v: { k: 'b', y: 2 } });
    const date = z.object({ at: z.date() });
    expect(fastSerializerFor(date)).toBeNull();
    const transform = z.object({ n: z.string().transform((s) => s.length) });
    expect(fastSerializerFor(transform)).toBeNull();
  });

  it('with validation (tests), a response that does not match its schema is refused as before', () => {
    const S = z.object({ n: z.number().int() });
    let err: unknown;
    try {
      compile(S, true)({ n: 'seven' });
    } catch (e) {
      err = e;
    }
    expect(isResponseSerializationError(err as never)).toBe(true);
    expect(compile(S, true)({ n: 7 })).toBe('{"n":7}');
  });

  it('a page of resources comes out as zod writes it', () => {
    const Page = z.object({ items: z.array(ResourceOut), nextCursor: z.string().nullable() });
    const r = (i: number) => ({
      id: `res_${i}`, kind: 'compute/Server', name: `s${i}`, project: 'p', spec: { size: i, nested: { a: [1, 2] } },
      status: { phase: 'ready', conditions: [{ type: 'Ready', status: 'True', reason: 'Done', message: 'ok', lastTransitionTime: 1, extra: 'x' }], outputs: { ip: '10.0.0.1' }, externalId: null, observedGeneration: 1, note: 'kept: status is loose' },
      labels: { tier: 'web' }, owner: i % 2 ? null : undefined, generation: 1, createdAt: 1, updatedAt: 2, internal: 'dropped',
    });
    const data = { items: [r(1), r(2), r(3)], nextCursor: null };
    expect(JSON.parse(compile(Page, true)(data))).toEqual(zodWrites(Page, data));
  });
});
