import { readFileSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BmcError, PowerProvider } from '../bmc/index.js';
import { RedfishDriver } from './driver.js';
import { runProviderContract } from '../../resources/contract.js';
import { parseSpec } from '../../resources/kinds.js';

/**
 * The Redfish driver against a local HTTP server that answers with DMTF
 * schema responses (test/fixtures/redfish, modelled on the DMTF
 * public-rackmount1 mockup) and applies Reset and boot-override PATCHes to
 * its state, checking Basic auth and If-Match like a BMC does.
 */
const fx = (f: string) => readFileSync(new URL(`../../../test/fixtures/redfish/${f}`, import.meta.url), 'utf8');

interface FakeBmc { url: string; server: Server; state: any; requests: string[]; mode: 'ok' | 'busy' | 'slow'; etag: number }

async function startBmc(user: string, password: string): Promise<FakeBmc> {
  const bmc: FakeBmc = { url: '', server: undefined as never, state: JSON.parse(fx('system.json')), requests: [], mode: 'ok', etag: 1 };
  const body = (req: IncomingMessage) => new Promise<any>((r) => { let b = ''; req.on('data', (d: Buffer) => { b += d.toString(); }); req.on('end', () => r(b ? JSON.parse(b) : undefined)); });
  bmc.server = createServer(async (req, res) => {
    const send = (status: number, payload?: string, headers: Record<string, string> = {}) => { res.writeHead(status, { 'content-type': 'application/json', ...headers }); res.end(payload); };
    bmc.requests.push(`${req.method} ${req.url}`);
    if (req.headers.authorization !== `Basic ${Buffer.from(`${user}:${password}`).toString('base64')}`) return send(401, fx('error-auth.json'), { 'www-authenticate': 'Basic realm="bmc"' });
    if (bmc.mode === 'busy') return send(503, fx('error-busy.json'), { 'retry-after': '5' });
    if (bmc.mode === 'slow') { await new Promise((r) => setTimeout(r, 3000)); return send(200, '{}'); }
    const sys = bmc.state['@odata.id'];
    if (req.method === 'GET' && req.url === '/redfish/v1/Systems') return send(200, fx('systems.json'));
    if (req.method === 'GET' && req.url === sys) return send(200, JSON.stringify(bmc.state), { etag: `W/"${bmc.etag}"` });
    if (req.method === 'PATCH' && req.url === sys) {
      if (req.headers['if-match'] && req.headers['if-match'] !== `W/"${bmc.etag}"`) return send(412, '{"error":{"message":"ETag mismatch"}}');
      const patch = await body(req);
      Object.assign(bmc.state.Boot, patch.Boot);
      bmc.etag++;
      return send(204);
    }
    if (req.method === 'POST' && req.url === `${sys}/Actions/ComputerSystem.Reset`) {
      const { ResetType } = await body(req);
      if (!bmc.state.Actions['#ComputerSystem.Reset']['ResetType@Redfish.AllowableValues'].includes(ResetType)) return send(400, '{"error":{"message":"ResetType not allowed"}}');
      bmc.state.PowerState = ['ForceOff', 'GracefulShutdown'].includes(ResetType) ? 'Off' : 'On';
      bmc.etag++;
      return send(204);
    }
    send(404, '{"error":{"message":"not found"}}');
  });
  await new Promise<void>((r) => bmc.server.listen(0, '127.0.0.1', r));
  bmc.url = `redfish+http://127.0.0.1:${(bmc.server.address() as AddressInfo).port}`;
  return bmc;
}

const creds = (bmc: FakeBmc, password = 'calvin') => ({ getBmcCredentials: async (id: string) => (id === 'srv_rf' ? { address: bmc.url, username: 'root', password } : null) });

let contractBmc: FakeBmc;
runProviderContract('bmc over Redfish (recorded DMTF responses)', async () => {
  contractBmc = await startBmc('root', 'calvin');
  return {
    provider: new PowerProvider({ credentials: creds(contractBmc), drivers: { redfish: new RedfishDriver() } }),
    tick: () => new Promise((r) => setTimeout(r, 10)),
    samples: async () => [{ kind: 'metal/Power', spec: { server: 'srv_rf', power: 'on' }, update: { server: 'srv_rf', power: 'off', bootDevice: 'pxe' }, replace: { server: 'srv_other' }, invalid: { server: '' } }],
    cleanup: async () => { contractBmc?.server.close(); },
  };
}, { describe, it, beforeAll, afterAll }, { kinds: ['metal/Power'] });

describe('Redfish driver', () => {
  let bmc: FakeBmc;
  beforeAll(async () => { bmc = await startBmc('root', 'calvin'); });
  afterAll(() => { bmc.server.close(); });
  const t = () => ({ address: bmc.url, username: 'root', password: 'calvin' });

  it('powers on through ComputerSystem.Reset, sets a one-time PXE override with If-Match, power-cycles', async () => {
    const d = new RedfishDriver();
    expect(await d.powerState(t())).toBe('off');
    await d.setBootDevice(t(), { device: 'pxe', persistent: false });
    expect(bmc.state.Boot).toMatchObject({ BootSourceOverrideTarget: 'Pxe', BootSourceOverrideEnabled: 'Once' });
    expect(await d.bootDevice(t())).toEqual({ device: 'pxe', persistent: false });
    await d.power(t(), 'on');
    expect(bmc.state.PowerState).toBe('On');
    await d.power(t(), 'cycle');
    expect(bmc.requests.filter((r) => r.startsWith('POST')).length).toBe(2);
    await d.setBootDevice(t(), { device: 'disk', persistent: true });
    expect(bmc.state.Boot).toMatchObject({ BootSourceOverrideTarget: 'Hdd', BootSourceOverrideEnabled: 'Continuous' });
    await d.power(t(), 'off');
    expect(bmc.state.PowerState).toBe('Off');
  });

  it('refuses a ResetType the BMC does not offer', async () => {
    const allowed = bmc.state.Actions['#ComputerSystem.Reset']['ResetType@Redfish.AllowableValues'];
    bmc.state.Actions['#ComputerSystem.Reset']['ResetType@Redfish.AllowableValues'] = ['On', 'ForceOff'];
    const e = await new RedfishDriver().power(t(), 'cycle').catch((x: unknown) => x);
    bmc.state.Actions['#ComputerSystem.Reset']['ResetType@Redfish.AllowableValues'] = allowed;
    expect(e).toBeInstanceOf(BmcError);
    expect((e as BmcError).failure).toBe('unsupported');
  });

  it('wrong credentials, a busy BMC and a hung BMC become typed failures', async () => {
    const auth = await new RedfishDriver().powerState({ ...t(), password: 'wrong-pw' }).catch((x: unknown) => x);
    expect((auth as BmcError).failure).toBe('auth');
    expect((auth as BmcError).retryable).toBe(false);
    expect((auth as Error).message).not.toContain('wrong-pw');
    bmc.mode = 'busy';
    const busy = await new RedfishDriver().powerState(t()).catch((x: unknown) => x);
    expect((busy as BmcError).failure).toBe('busy');
    expect((busy as BmcError).retryable).toBe(true);
    expect((busy as Error).message).toContain('temporarily unavailable');
    bmc.mode = 'slow';
    const slow = await new RedfishDriver({ timeoutMs: 300 }).powerState(t()).catch((x: unknown) => x);
    expect((slow as BmcError).failure).toBe('timeout');
    bmc.mode = 'ok';
    const down = await new RedfishDriver().powerState({ ...t(), address: 'http://127.0.0.1:9' }).catch((x: unknown) => x);
    expect((down as BmcError).failure).toBe('unreachable');
  });

  it('the power provider picks Redfish from the inventory address and reads drift', async () => {
    const p = new PowerProvider({ credentials: creds(bmc), drivers: { redfish: new RedfishDriver() } });
    const h = p.handler('metal/Power');
    await h.create(parseSpec('metal/Power', { server: 'srv_rf', power: 'on' }), { idempotencyKey: 'a', project: 'p', resourceId: 'r', resourceName: 'r' });
    bmc.state.PowerState = 'Off';
    const r = await h.read('srv_rf', { project: 'p', resourceId: 'r', resourceName: 'r' });
    expect(r.observed?.power).toBe('off');
    expect(r.outputs.protocol).toBe('redfish');
  });
});
