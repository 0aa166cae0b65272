import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';
import { chmodSync, existsSync, mkdirSync, openSync, readFileSync, writeSync, closeSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { InfraflowError, ValidationError } from './errors.js';

/**
 * Secrets at rest: AES-256-GCM with a 96-bit random nonce per value and an
 * optional associated data string (bind a ciphertext to its owner, e.g. the
 * secret's id, so a ciphertext copied to another row does not decrypt).
 *
 * Sealed format: `v1.<base64url(nonce | tag | ciphertext)>`.
 *
 * The key comes from `config.secretKey` (base64 of 32 bytes) or from the key
 * file `<dataDir>/secret.key`, created with mode 0600 on first start.
 */
export const SEALED_PREFIX = 'v1.';
export const REDACTED = '[redacted]';
export const KEY_FILE_NAME = 'secret.key';

export class SecretBox {
  private readonly key: Buffer;

  constructor(key: Buffer) {
    if (key.length !== 32) throw new ValidationError('secrets.invalid_key', `the secret key must be 32 bytes (base64 of 32 random bytes); got ${key.length} bytes — generate one with: openssl rand -base64 32`);
    this.key = Buffer.from(key);
  }

  /** A box with a fresh random key (tests). */
  static random(): SecretBox {
    return new SecretBox(randomBytes(32));
  }

  /**
   * The key from `secretKey` (base64) if given, else from `<dataDir>/secret.key`,
   * created (mode 0600) on first start.
   */
  static fromConfig(config: { secretKey?: string | undefined; dataDir: string }): SecretBox {
    if (config.secretKey) {
      const key = Buffer.from(config.secretKey, 'base64');
      if (key.length !== 32) throw new ValidationError('config.invalid', `config key secretKey (INFRAFLOW_SECRET_KEY) must be base64 of exactly 32 bytes; got ${key.length} bytes — generate one with: openssl rand -base64 32`);
      return new SecretBox(key);
    }
    return new SecretBox(loadOrCreateKeyFile(join(resolve(config.dataDir), KEY_FILE_NAME)));
  }

  seal(plaintext: string, aad = ''): string {
    const nonce = randomBytes(12);
    const cipher = createCipheriv('aes-256-gcm', this.key, nonce);
    cipher.setAAD(Buffer.from(aad, 'utf8'));
    const ct = Buffer.concat([cipher.update(plaintext, 'utf8'), cipher.final()]);
    return SEALED_PREFIX + Buffer.concat([nonce, cipher.getAuthTag(), ct]).toString('base64url');
  }

  open(sealed: string, aad = ''): string {
    if (!isSealed(sealed)) throw new InfraflowError('secrets.invalid_ciphertext', 'the stored secret is not in the sealed format; it may have been written without encryption', 500);
    const raw = Buffer.from(sealed.slice(SEALED_PREFIX.length), 'base64url');
    if (raw.length < 28) throw new InfraflowError('secrets.invalid_ciphertext', 'the stored secret is truncated', 500);
    const decipher = createDecipheriv('aes-256-gcm', this.key, raw.subarray(0, 12));
    decipher.setAAD(Buffer.from(aad, 'utf8'));
    decipher.setAuthTag(raw.subarray(12, 28));
    try {
      return Buffer.concat([decipher.update(raw.subarray(28)), decipher.final()]).toString('utf8');
    } catch {
      throw new InfraflowError('secrets.decrypt_failed', 'a stored secret could not be decrypted: the secret key (secretKey or data/secret.key) is not the one it was written with', 500);
    }
  }

  /** Seals a JSON value. */
  sealJson(value: unknown, aad = ''): string {
    return this.seal(JSON.stringify(value), aad);
  }

  openJson<T = unknown>(sealed: string, aad = ''): T {
    return JSON.parse(this.open(sealed, aad)) as T;
  }
}

export function isSealed(value: unknown): value is string {
  return typeof value === 'string' && value.startsWith(SEALED_PREFIX);
}

/**
 * The base64 secret key for components that seal their own data (e.g. the
 * resource store's `secretKey`): `config.secretKey`, else the key file in
 * dataDir (created on first start). Every component must use this one key.
 */
export function resolveSecretKey(config: { secretKey?: string | undefined; dataDir: string }): string {
  if (config.secretKey) return config.secretKey;
  return loadOrCreateKeyFile(join(resolve(config.dataDir), KEY_FILE_NAME)).toString('base64');
}

function loadOrCreateKeyFile(path: string): Buffer {
  if (!existsSync(path)) {
    mkdirSync(resolve(path, '..'), { recursive: true });
    try {
      const fd = openSync(path, 'wx', 0o600);
      try {
        writeSync(fd, randomBytes(32).toString('base64') + '\n');
      } finally {
        closeSync(fd);
      }
      chmodSync(path, 0o600);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
    }
  }
  const key = Buffer.from(readFileSync(path, 'utf8').trim(), 'base64');
  if (key.length !== 32) throw new ValidationError('secrets.invalid_key', `the key file ${path} must hold base64 of 32 bytes; restore it from backup (secrets written with it cannot be read otherwise)`);
  return key;
}

/** Keys (case-insensitive) whose values are secrets wherever they appear in a document. */
export const SECRET_KEYS: ReadonlySet<string> = new Set(['password', 'passwd', 'secret', 'token', 'apikey', 'api_key', 'credential', 'credentials', 'kubeconfig', 'privatekey', 'private_key', 'bmcpassword', 'adminpassword', 'authorization', 'cookie', 'access_token', 'refresh_token', 'client_secret']);

/**
 * A URL with its credentials hidden: user info, and the values of query
 * parameters with secret names (token=…, api_key=…, password=…). Text that is
 * not a URL comes back with `scheme://user:pass@` removed.
 */
export function redactUrl(url: string): string {
  try {
    const u = new URL(url);
    if (u.username || u.password) {
      u.username = u.username ? REDACTED : '';
      u.password = '';
    }
    for (const k of [...u.searchParams.keys()]) if (isSecretKey(k) || /(token|secret|password|key|sig|signature)$/i.test(k)) u.searchParams.set(k, REDACTED);
    return u.toString();
  } catch {
    return redactText(url);
  }
}

/** Free text (an error body, a message) with URL credentials, bearer tokens and `secret=value` pairs hidden. */
export function redactText(text: string): string {
  return text
    .replace(/\b([a-z][a-z0-9+.-]*:\/\/)[^\s/@:]+(:[^\s/@]*)?@/gi, `$1${REDACTED}@`)
    .replace(/\b(bearer|basic)\s+[A-Za-z0-9._~+/=-]{8,}/gi, `$1 ${REDACTED}`)
    .replace(/\b((?:access_|refresh_)?token|api_?key|password|passwd|secret|client_secret|authorization)(["']?\s*[:=]\s*["']?)[^\s"'&,}]+/gi, `$1$2${REDACTED}`);
}

/** Replaces every occurrence of the given secret values in the strings of `value` (deeply) with `(sensitive)`. */
export function maskValues<T>(value: T, secrets: readonly string[]): T {
  const list = secrets.filter((s) => s.length > 0);
  if (list.length === 0) return value;
  const maskString = (s: string) => {
    let out = s;
    for (const x of list) if (out.includes(x)) out = out.split(x).join(SENSITIVE);
    return out;
  };
  const walk = (v: unknown): unknown => {
    if (typeof v === 'string') return maskString(v);
    if (v === null || typeof v !== 'object') return v;
    if (Array.isArray(v)) return v.map(walk);
    if (Object.getPrototypeOf(v) !== Object.prototype) return v;
    const out: Record<string, unknown> = {};
    for (const [k, x] of Object.entries(v)) out[k] = walk(x);
    return out;
  };
  return walk(value) as T;
}

export const SENSITIVE = '(sensitive)';

/**
 * redact() for log objects: plain objects and arrays only (requests,
 * responses, errors and other class instances are left to pino's
 * serializers), cycles and depth beyond 16 left as they are.
 */
export function redactLog<T>(value: T, depth = 0, seen: WeakSet<object> = new WeakSet()): T {
  if (value === null || typeof value !== 'object' || depth > 16) return value;
  const proto = Object.getPrototypeOf(value) as unknown;
  if (!Array.isArray(value) && proto !== Object.prototype && proto !== null) return value;
  if (seen.has(value)) return value;
  seen.add(value);
  if (Array.isArray(value)) {
    let out: unknown[] | undefined;
    value.forEach((v, i) => {
      const r = redactLog(v, depth + 1, seen);
      if (r !== v) (out ??= value.slice())[i] = r;
    });
    return (out ?? value) as T;
  }
  let out: Record<string, unknown> | undefined;
  const obj = value as Record<string, unknown>;
  for (const k of Object.keys(obj)) {
    const v = obj[k];
    const r = v !== null && v !== undefined && isSecretKey(k) ? REDACTED : redactLog(v, depth + 1, seen);
    if (r !== v) (out ??= { ...obj })[k] = r;
  }
  return (out ?? value) as T;
}

export function isSecretKey(key: string): boolean {
  return SECRET_KEYS.has(key.toLowerCase());
}

/**
 * `value` with every secret-named key's value replaced by `[redacted]`.
 * Copy on write: objects without secrets come back as they are (no copy),
 * so redacting large pages costs a walk, not an allocation per node.
 */
export function redact<T>(value: T): T {
  if (value === null || typeof value !== 'object') return value;
  if (Array.isArray(value)) {
    let out: unknown[] | undefined;
    for (let i = 0; i < value.length; i++) {
      const v = value[i];
      const r = redact(v);
      if (r !== v) (out ??= value.slice())[i] = r;
    }
    return (out ?? value) as T;
  }
  let out: Record<string, unknown> | undefined;
  const obj = value as Record<string, unknown>;
  for (const k in obj) {
    if (!Object.prototype.hasOwnProperty.call(obj, k)) continue;
    const v = obj[k];
    const r = v !== null && v !== undefined && isSecretKey(k) ? REDACTED : redact(v);
    if (r !== v) (out ??= { ...obj })[k] = r;
  }
  return (out ?? value) as T;
}
