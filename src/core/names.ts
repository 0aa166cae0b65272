import { z } from 'zod';

/**
 * One rule for names, label keys and display text (docs/api.md, "Names and
 * labels"), written once and used by every schema that takes them, so the
 * OpenAPI pattern and the server agree:
 *
 * - resource names: a Kubernetes DNS-1123 subdomain — lower-case letters,
 *   digits, `-` and `.`, starting and ending with a letter or digit, at most
 *   253 characters;
 * - label keys: Kubernetes' qualified name — an optional DNS-1123 prefix and
 *   `/`, then 1-63 letters, digits, `-`, `_` or `.`, starting and ending with
 *   a letter or digit (`tier`, `infraflow.dev/name`);
 * - label values: at most 253 characters of display text;
 * - display text (descriptions, display names, token names, label values):
 *   any Unicode, but never control characters, bidi overrides or zero-width
 *   characters (Unicode categories Cc and Cf, line and paragraph separators),
 *   and no leading or trailing white space.
 *
 * Messages never echo the value sent.
 */

export const DNS_LABEL = '[a-z0-9]([-a-z0-9]*[a-z0-9])?';
export const DNS_SUBDOMAIN_RE = new RegExp(`^${DNS_LABEL}(\\.${DNS_LABEL})*$`);
const QUALIFIED_NAME = '[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?';
export const LABEL_KEY_RE = new RegExp(`^(${DNS_LABEL}(\\.${DNS_LABEL})*/)?${QUALIFIED_NAME}$`);

/** Control, format (bidi overrides, zero-width), line/paragraph separators. */
const UNSAFE_TEXT = /[\p{Cc}\p{Cf}\u2028\u2029]/u;

export const NAME_HINT = 'use lower-case letters, digits, "-" and ".", starting and ending with a letter or digit (a DNS-1123 subdomain, at most 253 characters)';

/** A resource-style name (DNS-1123 subdomain). */
export function dnsNameSchema(max = 253) {
  return z.string().min(1, 'a name is required').max(max, `a name has at most ${max} characters`).regex(DNS_SUBDOMAIN_RE, NAME_HINT);
}

/** Why `s` is not display text, or undefined. */
export function displayTextProblem(s: string): string | undefined {
  if (UNSAFE_TEXT.test(s)) return 'must not contain control characters, bidi overrides or zero-width characters';
  if (s !== s.trim()) return 'must not start or end with white space';
  return undefined;
}

/** Display text of at most `max` characters (see the rule above). */
export function displayTextSchema(max: number, min = 0) {
  return z.string().min(min, min > 0 ? 'must not be empty' : undefined).max(max, `at most ${max} characters`).superRefine((v, ctx) => {
    const problem = displayTextProblem(v);
    if (problem) ctx.addIssue({ code: 'custom', message: problem });
  });
}

export const LABEL_KEY_HINT = 'a label key is an optional DNS prefix and "/", then 1-63 letters, digits, "-", "_" or ".", starting and ending with a letter or digit (e.g. tier, infraflow.dev/name)';

/** Why `key` is not a label key, or undefined. */
export function labelKeyProblem(key: string): string | undefined {
  if (key.length > 316 || !LABEL_KEY_RE.test(key)) return LABEL_KEY_HINT;
  const slash = key.lastIndexOf('/');
  if (slash > 253 || key.length - slash - 1 > 63) return LABEL_KEY_HINT;
  return undefined;
}

export const labelKeySchema = z.string().superRefine((k, ctx) => {
  const problem = labelKeyProblem(k);
  if (problem) ctx.addIssue({ code: 'custom', message: problem });
});

export const labelValueSchema = displayTextSchema(253);

/** Labels: label keys to label values. */
export const labelsSchema = z.record(labelKeySchema, labelValueSchema);
