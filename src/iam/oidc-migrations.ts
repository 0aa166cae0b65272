import { col, type AreaMigration } from '../store/migrate.js';

/**
 * OpenID Connect federation (src/iam/oidc.ts): which upstream identity a
 * user is, and the provider tokens behind each federated session (sealed).
 */
export interface IamIdentityTable {
  issuer: string;
  subject: string;
  user_id: string;
  created_at: number;
  last_login_at: number;
}
export interface IamOidcSessionTable {
  /** The Infraflow session token (iam_tokens.id) this provider session stands behind. */
  token_id: string;
  user_id: string;
  issuer: string;
  subject: string;
  /** Sealed (secret box): the ID token, for RP-initiated logout (id_token_hint). */
  id_token: string | null;
  /** Sealed: the provider's refresh token, used by POST /auth/refresh. */
  refresh_token: string | null;
  refreshed_at: number;
  created_at: number;
}
export interface IamOidcHandoffTable {
  /** sha256 of the one-time code handed to the CLI's loopback listener. */
  id: string;
  /** Sealed session token. */
  token: string;
  /** PKCE S256 challenge the CLI sent when it started: the exchange must present the verifier. */
  challenge: string;
  expires_at: number;
}

declare module '../store/schema.js' {
  interface Database {
    iam_identities: IamIdentityTable;
    iam_oidc_sessions: IamOidcSessionTable;
    iam_oidc_handoffs: IamOidcHandoffTable;
  }
}

export const oidcMigrations: AreaMigration[] = [
  {
    name: '0650_iam_oidc',
    async up(db) {
      const s = db.schema;
      await s.createTable('iam_identities')
        .addColumn('issuer', col.text, (c) => c.notNull())
        .addColumn('subject', col.text, (c) => c.notNull())
        .addColumn('user_id', col.id, (c) => c.notNull())
        .addColumn('created_at', col.ts, (c) => c.notNull())
        .addColumn('last_login_at', col.ts, (c) => c.notNull())
        .addPrimaryKeyConstraint('iam_identities_pk', ['issuer', 'subject'])
        .execute();
      await s.createIndex('iam_identities_user').on('iam_identities').column('user_id').execute();
      await s.createTable('iam_oidc_sessions')
        .addColumn('token_id', col.id, (c) => c.primaryKey())
        .addColumn('user_id', col.id, (c) => c.notNull())
        .addColumn('issuer', col.text, (c) => c.notNull())
        .addColumn('subject', col.text, (c) => c.notNull())
        .addColumn('id_token', col.text)
        .addColumn('refresh_token', col.text)
        .addColumn('refreshed_at', col.ts, (c) => c.notNull())
        .addColumn('created_at', col.ts, (c) => c.notNull())
        .execute();
      await s.createTable('iam_oidc_handoffs')
        .addColumn('id', col.id, (c) => c.primaryKey())
        .addColumn('token', col.text, (c) => c.notNull())
        .addColumn('challenge', col.text, (c) => c.notNull())
        .addColumn('expires_at', col.ts, (c) => c.notNull())
        .execute();
    },
  },
];
