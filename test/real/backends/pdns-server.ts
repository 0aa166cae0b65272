import Database from 'better-sqlite3';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { freePort, requireBinary, run, startDaemon, tempDir, waitForPort, type Daemon } from './support.js';

/** A PowerDNS Authoritative server (sqlite3 backend, HTTP API on) on random loopback ports in a temp dir. */
export interface PdnsServer { url: string; apiKey: string; dnsPort: number; daemon: Daemon; stop(): Promise<void> }

const SCHEMA = ['/usr/share/pdns-backend-sqlite3/schema/schema.sqlite3.sql', '/usr/share/doc/pdns-backend-sqlite3/schema.sqlite3.sql'];

export async function startPowerDns(): Promise<PdnsServer> {
  const bin = requireBinary('pdns_server', 'pdns-server');
  const schemaFile = SCHEMA.find((f) => { try { readFileSync(f); return true; } catch { return false; } });
  if (!schemaFile) throw new Error('the PowerDNS sqlite3 schema is missing: install the Debian package pdns-backend-sqlite3');
  requireBinary('dig', 'bind9-dnsutils');
  const dir = tempDir('pdns');
  const db = new Database(join(dir.path, 'pdns.sqlite3'));
  db.exec(readFileSync(schemaFile, 'utf8'));
  db.close();
  const [dnsPort, apiPort] = [await freePort(), await freePort()];
  const apiKey = `k${Math.random().toString(36).slice(2)}`;
  // settings (the API key among them) go in a config file, not on the command line `ps` shows
  const settings = [
    'daemon=no', 'guardian=no', 'disable-syslog=yes', 'loglevel=3',
    `socket-dir=${dir.path}`, 'launch=gsqlite3', `gsqlite3-database=${join(dir.path, 'pdns.sqlite3')}`,
    'local-address=127.0.0.1', `local-port=${dnsPort}`,
    'api=yes', `api-key=${apiKey}`, 'webserver=yes', 'webserver-address=127.0.0.1', `webserver-port=${apiPort}`, 'webserver-allow-from=127.0.0.0/8',
    'cache-ttl=0', 'negquery-cache-ttl=0', 'query-cache-ttl=0', 'zone-cache-refresh-interval=0', 'consistent-backends=yes',
    'distributor-threads=2', 'receiver-threads=1', 'webserver-max-bodysize=16',
  ];
  writeFileSync(join(dir.path, 'pdns.conf'), settings.join('\n') + '\n', { mode: 0o600 });
  const daemon = startDaemon(bin, [`--config-dir=${dir.path}`]);
  await waitForPort(apiPort, daemon);
  await waitForPort(dnsPort, daemon);
  return {
    url: `http://127.0.0.1:${apiPort}`, apiKey, dnsPort, daemon,
    stop: async () => { await daemon.stop(); dir.remove(); },
  };
}

/** Asks the server with dig; answers the data of the answer section (one string per record). */
export function dig(server: PdnsServer, name: string, type: string): string[] {
  const r = run('dig', ['+short', '+norecurse', '+time=5', '+tries=2', '-p', String(server.dnsPort), '@127.0.0.1', name, type]);
  return r.stdout.split('\n').map((l) => l.trim()).filter(Boolean);
}

export function digFull(server: PdnsServer, name: string, type: string): string {
  return run('dig', ['+norecurse', '+time=5', '+tries=2', '-p', String(server.dnsPort), '@127.0.0.1', name, type]).stdout;
}
