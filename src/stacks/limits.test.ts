import { describe, expect, it } from 'vitest';
import { parseStack } from './parse.js';
import { compileStack, type KindCatalog } from './model.js';
import { diffStack } from './plan.js';
import { compileExpr, toCel } from './expr.js';
import { InfraflowError } from '../core/errors.js';
import { parseYamlText } from '../core/input.js';

/**
 * Untrusted documents and expressions: every limit is a 400 (ValidationError)
 * naming the place, reached after bounded work. Before these limits the
 * cubic count below ran for 71 s and grew the server to 4.3 GB, the
 * backtracking `matches` took 107 s, alias bombs were 500s and 50,000 label
 * keys took 220 s to plan; these tests would time out or fail with a 500.
 */
const kinds: KindCatalog = {
  get: (k) => (['network/Network', 'compute/Server'].includes(k) ? { kind: k, replaceOnChange: [] } : undefined),
  kinds: () => ['network/Network', 'compute/Server'],
};

function err(fn: () => unknown): InfraflowError {
  try {
    fn();
  } catch (e) {
    if (e instanceof InfraflowError) return e;
    throw e;
  }
  throw new Error('expected an error');
}

const head = 'apiVersion: infraflow.dev/v1\nkind: Stack\nmetadata:\n  name: s\nspec:\n';
const xs = Array.from({ length: 1000 }, (_, i) => i);

describe('expressions have a cost budget', () => {
  it('a cubic count over a 1,000-item parameter is refused with the resource and its line', () => {
    const text = `${head}  parameters:\n    xs: { type: list }\n  resources:\n    back-net:\n      kind: network/Network\n      count: "\${ params.xs.map(a, params.xs.map(b, params.xs.map(c, a + b + c))).size() }"\n`;
    const e = err(() => compileStack(parseStack(text, { file: 'bomb.yaml' }), { kinds, params: { xs } }));
    expect(e.status).toBe(400);
    expect(e.code).toBe('stacks.expression_limit');
    expect(e.message).toMatch(/^bomb\.yaml:11:\d+: spec\.resources\.back-net\.count: resource back-net: .*exceeds the cost limit/);
    expect(e.details).toMatchObject({ resource: 'back-net', line: 11 });
  });

  it('a cubic all() in `when` is refused too, and `||` cannot swallow the limit', () => {
    const text = `${head}  parameters:\n    xs: { type: list }\n  resources:\n    net:\n      kind: network/Network\n      when: "params.xs.all(a, params.xs.all(b, params.xs.all(c, a + b + c >= 0))) || true"\n`;
    const e = err(() => compileStack(parseStack(text, { file: 'w.yaml' }), { kinds, params: { xs } }));
    expect(e.code).toBe('stacks.expression_limit');
    expect(e.message).toContain('spec.resources.net.when');
  });

  it('a spec template over the limit names the field inside the spec', () => {
    const text = `${head}  parameters:\n    xs: { type: list }\n  resources:\n    net:\n      kind: network/Network\n      spec:\n        name: ok\n        mtu: "\${ params.xs.map(a, params.xs.map(b, params.xs + params.xs)).size() }"\n`;
    const model = compileStack(parseStack(text, { file: 'm.yaml' }), { kinds, params: { xs } });
    const e = err(() => diffStack(model, []));
    expect(e.code).toBe('stacks.expression_limit');
    expect(e.message).toMatch(/^m\.yaml:13:\d+: spec\.resources\.net\.spec\.mtu: resource net: /);
  });

  it('many cheap expressions share one budget per document', () => {
    // 2,000 instances × ~5,000 cost each: every expression alone is fine, the document is not
    const text = `${head}  parameters:\n    xs: { type: list }\n  resources:\n    net:\n      kind: network/Network\n      count: 2000\n      spec:\n        n: "\${ params.xs.filter(b, b < 10).size() }"\n`;
    const model = compileStack(parseStack(text), { kinds, params: { xs } });
    const e = err(() => diffStack(model, []));
    expect(e.code).toBe('stacks.expression_limit');
    expect(e.message).toContain('cost left for this document');
  });

  it('ordinary expressions are unaffected', () => {
    expect(compileExpr('params.xs.map(a, a * 2).size()').evaluate({ params: { xs: toCel(xs) } })).toBe(1000);
    expect(compileExpr('params.xs.exists(a, params.xs.exists(b, a == b && a == 99))').evaluate({ params: { xs: toCel(xs.slice(0, 100)) } })).toBe(true);
  });

  it('matches uses a linear-time engine (RE2): catastrophic backtracking patterns answer at once', () => {
    const s = `${'a'.repeat(40)}!`;
    expect(compileExpr(`"${s}".matches("^(a+)+$")`).evaluate({})).toBe(false);
    expect(compileExpr(`params.s.matches("^(a|aa)+$") || params.s.matches("^([a-z]+)*$")`).evaluate({ params: { s: `${'a'.repeat(5000)}!` } })).toBe(false);
    expect(compileExpr('"web-01".matches("^web-[0-9]+$")').evaluate({})).toBe(true);
    // a pattern RE2 cannot run (backreferences) is a clear error, not a hang
    expect(() => compileExpr('"aa".matches("(a)\\\\1")').evaluate({})).toThrow(/invalid regular expression \(RE2 syntax\)/);
  });

  it('an over-long expression is refused at compile time', () => {
    expect(() => compileExpr(`1${' + 1'.repeat(5000)}`)).toThrow(/longer than 10000 characters|Exceeded/);
  });
});

describe('documents are parsed with limits', () => {
  it('a billion-laughs alias bomb is a 400 naming the limit', () => {
    let text = `${head}  outputs:\n    a0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]\n`;
    for (let i = 1; i <= 9; i++) text += `    a${i}: &a${i} [${Array.from({ length: 10 }, () => `*a${i - 1}`).join(', ')}]\n`;
    const e = err(() => parseStack(text, { file: 'lol.yaml' }));
    expect(e.status).toBe(400);
    expect(e.code).toBe('stacks.syntax_error');
    expect(e.message).toMatch(/^lol\.yaml(:\d+:\d+)?: the document('s aliases expand too much| uses more than 100 aliases)/);
  });

  it('a few aliases that expand a lot are refused by the expanded size', () => {
    let text = `${head}  outputs:\n    a0: &a0 [${Array.from({ length: 200 }, () => 'x').join(', ')}]\n`;
    for (let i = 1; i <= 4; i++) text += `    a${i}: &a${i} [${Array.from({ length: 20 }, () => `*a${i - 1}`).join(', ')}]\n`;
    const e = err(() => parseStack(text));
    expect(e.code).toBe('stacks.syntax_error');
    expect(e.message).toMatch(/more than \d+ values|nested more than|expand too much/);
  });

  it('a long scalar aliased many times is refused by the expanded characters', () => {
    const big = 'x'.repeat(700_000);
    const text = `${head}  outputs:\n    big: &big "${big}"\n    many: [${Array.from({ length: 99 }, () => '*big').join(', ')}]\n`;
    const e = err(() => parseStack(text));
    expect(e.code).toBe('stacks.syntax_error');
    expect(e.message).toContain('aliases expand to more than');
  });

  it('deep nesting is a 400, in YAML text and in objects', () => {
    const deep = `${'['.repeat(10_000)}${']'.repeat(10_000)}`;
    const e = err(() => parseStack(`${head}  outputs:\n    x: ${deep}\n`));
    expect(e.code).toBe('stacks.syntax_error');
    expect(e.message).toMatch(/nested/);
    let o: unknown = 1;
    for (let i = 0; i < 10_000; i++) o = { o };
    const e2 = err(() => parseStack({ apiVersion: 'infraflow.dev/v1', kind: 'Stack', metadata: { name: 's' }, spec: { outputs: { o } } }));
    expect(e2.code).toBe('stacks.invalid_document');
    expect(e2.message).toContain('nested more than 64 levels');
  });

  it('too many resources are refused before the schema walks them', () => {
    const lines = Array.from({ length: 5001 }, (_, i) => `    r${i}: { kind: network/Network }`).join('\n');
    const e = err(() => parseStack(`${head}  resources:\n${lines}\n`, { file: 'many.yaml' }));
    expect(e.code).toBe('stacks.too_many_resources');
    expect(e.message).toMatch(/^many\.yaml:\d+:\d+: spec\.resources: a stack may declare at most 5000 resources/);
  });

  it('an oversized document is refused', () => {
    const e = err(() => parseStack(`${head}# ${'x'.repeat(2_000_001)}\n`));
    expect(e.message).toContain('larger than 2000000 characters');
  });

  it('50,000 label keys plan (duplicate keys are checked in linear time) and a duplicate is still found', () => {
    const labels = Array.from({ length: 50_000 }, (_, i) => `          k${i}: v`).join('\n');
    const text = `${head}  resources:\n    net:\n      kind: network/Network\n      spec:\n        labels:\n${labels}\n`;
    const plan = diffStack(compileStack(parseStack(text), { kinds }), []);
    expect(plan.summary.create).toBe(1);
    const e = err(() => parseStack(`${text}          k49999: again\n`, { file: 'dup.yaml' }));
    expect(e.message).toMatch(/^dup\.yaml:50011:11: duplicate key "k49999"/);
  });

  it('parseYamlText checks keys per mapping only', () => {
    expect(parseYamlText('a: { x: 1 }\nb: { x: 2 }\n').value).toEqual({ a: { x: 1 }, b: { x: 2 } });
  });
});
