import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);

/**
 * Where the client tests point: by default an Infraflow server started here
 * (SQLite in a temp dir, a random port, the simulator fast); with
 * OPENSTACK_TARGET=external, whatever OS_AUTH_URL/OS_USERNAME/… in the
 * environment name (the real OpenStack of test/openstack/devstack-lite.sh),
 * so the same tests check that the façade is faithful.
 */
export interface Target {
  env: NodeJS.ProcessEnv;
  /** The external network floating IPs come from (created when missing). */
  publicNetwork: string;
  flavor: string;
  image: string;
  stop(): Promise<void>;
}

const ROOT = resolve(import.meta.dirname, '../../..');

export function requireBinary(name: string, pkg: string): Promise<void> {
  return run('sh', ['-c', `command -v ${name}`]).then(() => undefined, () => {
    throw new Error(`${name} is missing: install the Debian package ${pkg} (listed in .ci/apt/openstack.txt)`);
  });
}

export async function startTarget(): Promise<Target> {
  await requireBinary('openstack', 'python3-openstackclient');
  if (process.env.OPENSTACK_TARGET === 'external') {
    return { env: { ...process.env }, publicNetwork: process.env.OS_PUBLIC_NETWORK ?? 'public', flavor: process.env.OS_TEST_FLAVOR ?? 'm1.tiny', image: process.env.OS_TEST_IMAGE ?? 'cirros', stop: async () => {} };
  }
  const dir = await mkdtemp(join(tmpdir(), 'h17-openstack-'));
  const password = 'openstack-tests-password-1';
  const child: ChildProcess = spawn(process.execPath, [join(ROOT, 'node_modules/tsx/dist/cli.mjs'), join(ROOT, 'src/main.ts')], {
    cwd: dir,
    env: { ...process.env, INFRAFLOW_DATA_DIR: join(dir, 'data'), INFRAFLOW_PORT: '0', INFRAFLOW_HOST: '127.0.0.1', INFRAFLOW_ADMIN_PASSWORD: password, INFRAFLOW_SIM_SPEED: '1000', INFRAFLOW_RATE_LIMIT: '0', INFRAFLOW_LOG_LEVEL: 'info' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let log = '';
  const url = await new Promise<string>((res, rej) => {
    const onData = (b: Buffer) => {
      log += b.toString();
      const m = /"url":"(http:\/\/[^"]+)","database"/.exec(log);
      if (m) res(m[1]!);
    };
    child.stdout!.on('data', onData);
    child.stderr!.on('data', onData);
    child.on('exit', (code) => rej(new Error(`infraflow exited (${code}) before listening:\n${log.slice(-2000)}`)));
  });
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    OS_AUTH_URL: `${url}/openstack/identity/v3`, OS_USERNAME: 'admin', OS_PASSWORD: password, OS_PROJECT_NAME: 'default',
    OS_USER_DOMAIN_NAME: 'Default', OS_PROJECT_DOMAIN_NAME: 'Default', OS_IDENTITY_API_VERSION: '3', OS_INTERFACE: 'public', OS_REGION_NAME: 'RegionOne',
  };
  return {
    env, publicNetwork: 'public', flavor: 'production-cpu2-ram4-disk20', image: 'debian-12',
    async stop() {
      child.kill('SIGTERM');
      await new Promise((r) => (child.exitCode !== null ? r(null) : child.once('exit', r)));
      await rm(dir, { recursive: true, force: true });
    },
  };
}

/** Runs `openstack …` with the target's credentials; JSON output parsed when `-f json` is given. */
export async function os(t: Target, ...args: string[]): Promise<any> {
  try {
    const { stdout } = await run('openstack', args, { env: t.env, maxBuffer: 16 << 20, timeout: 120_000 });
    return args.includes('json') ? JSON.parse(stdout) : stdout;
  } catch (e) {
    const err = e as { stderr?: string; stdout?: string; message: string };
    throw new Error(`openstack ${args.join(' ')} failed: ${err.stderr || err.stdout || err.message}`, { cause: e });
  }
}

/** Like `os`, but expects the command to fail; returns its message. */
export async function osFails(t: Target, ...args: string[]): Promise<string> {
  try {
    await run('openstack', args, { env: t.env, timeout: 120_000 });
  } catch (e) {
    return (e as { stderr?: string }).stderr ?? '';
  }
  throw new Error(`openstack ${args.join(' ')} succeeded but should have failed`);
}

export { run };
