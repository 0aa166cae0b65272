import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { a11yViolations, launchBrowser, requireChromiumAndBuild, screenshot, seedResources, signInWithPassword, startConsoleServer, type Browser, type ConsoleServer } from './support.js';
import { startTestProvider, type TestProvider } from '../support/oidc.js';
import { OidcFederation } from '../../src/iam/oidc.js';
import type { SignInSettings } from '../../src/api/session.js';
import type { Page } from 'playwright-core';

/**
 * The console in Debian's chromium, against a whole Infraflow process (API,
 * worker, simulated datacenter) on loopback. Every test ends with a
 * screenshot under .tmp/e2e/ and fails on any WCAG 2.2 AA violation axe-core finds.
 */
requireChromiumAndBuild();

const PUBLIC_KEY = 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGb3m6yTk0n8dJZ6r7q2m8r3M3bq8eY8H2dHnQk0Zk7x e2e@example.com';

async function accessible(page: Page, where: string): Promise<void> {
  const v = await a11yViolations(page);
  expect(v, `accessibility violations on ${where}`).toEqual([]);
}

describe('the web console', () => {
  let srv: ConsoleServer;
  let b: Browser;
  let page: Page;
  let provider: TestProvider;

  beforeAll(async () => {
    srv = await startConsoleServer({
      beforeListen: async (ctx) => {
        await seedResources(ctx, 'bulk', 100_000);
      },
    });
    await srv.deps.iam.createProject({ name: 'bulk' });
    b = await launchBrowser();
    page = b.page;
  }, 600_000);

  // a failed test leaves its page behind too
  afterEach(async (c) => {
    if (c.task.result?.state === 'fail' && page) await screenshot(page, `failed-${c.task.name.slice(0, 40).replace(/[^a-z0-9]+/gi, '-')}`).catch(() => undefined);
  });

  afterAll(async () => {
    await b?.close();
    await provider?.close();
    await srv?.close();
  });

  it('signs in with a password, refusing a wrong one readably', async () => {
    await page.goto(srv.base + '/');
    await accessible(page, 'the sign-in page');
    await page.getByLabel('User name', { exact: true }).fill('admin');
    await page.getByLabel('Password', { exact: true }).fill('not-the-password');
    await page.getByRole('button', { name: 'Sign in' }).click();
    await expect.poll(() => page.getByRole('alert').textContent()).toContain('wrong user name or password');
    await signInWithPassword(page, srv.base);
    await page.getByRole('heading', { name: 'Overview' }).waitFor();
    await page.getByRole('heading', { name: 'Hypervisors' }).waitFor();
    await accessible(page, 'the overview');
    await screenshot(page, 'password-sign-in');
  });

  it('creates a VM through the wizard and follows it live until ACTIVE with its address', async () => {
    await page.goto(srv.base + '/vm/new');
    await page.getByLabel('Server name').fill('web-1');
    await page.getByRole('button', { name: 'Next' }).click();
    await page.getByRole('radio', { name: /^SCS-2V-4 / }).check();
    await page.getByRole('button', { name: 'Next' }).click();
    await page.getByRole('radio', { name: /^ubuntu-24\.04/ }).check();
    await page.getByRole('button', { name: 'Next' }).click();
    // SCS-2V-4 has no disk of its own: the boot volume step comes
    await page.getByLabel('Boot volume size (GiB)').fill('30');
    await page.getByRole('button', { name: 'Next' }).click();
    await accessible(page, 'the networks step');
    await page.getByLabel('Network name').fill('web-net');
    await page.getByLabel('Attach to a router').selectOption('__new');
    await page.getByRole('button', { name: 'Create network' }).click();
    await page.getByRole('checkbox', { name: /web-net/ }).waitFor({ timeout: 120_000 });
    expect(await page.getByRole('checkbox', { name: /web-net/ }).isChecked()).toBe(true);
    await page.getByRole('button', { name: 'Next' }).click();
    await page.getByLabel('Group name').fill('web-sg');
    await page.getByRole('button', { name: 'Create security group' }).click();
    await expect.poll(() => page.getByLabel('Security group', { exact: true }).inputValue(), { timeout: 120_000 }).toBe('web-sg');
    await page.getByRole('button', { name: 'Next' }).click();
    await page.getByLabel('New key pair name').fill('e2e-key');
    await page.getByLabel('Public key (OpenSSH)').fill(PUBLIC_KEY);
    await page.getByRole('button', { name: 'Next' }).click();
    await page.getByRole('heading', { name: 'Review' }).waitFor();
    expect(await page.locator('dl.review').textContent()).toContain('30 GiB volume');
    await page.getByRole('button', { name: 'Create' }).click();
    await page.getByRole('heading', { name: 'Server server-web-1-server is ACTIVE' }).waitFor({ timeout: 120_000 });
    await expect.poll(() => page.getByTestId('server-addresses').textContent()).toMatch(/\d+\.\d+\.\d+\.\d+/);
    await accessible(page, 'the VM progress page');
    await screenshot(page, 'vm-wizard-active');
    // the router was created with the new subnet attached
    const routers = await srv.ctx.resources.list({ project: 'default', kind: 'network/Router', limit: 10 });
    expect(routers.items.find((r) => r.name === 'web-net-router')?.spec.interfaces).toHaveLength(1);
  });

  it('plans a stack as you type, applies it, and answers its approval with a comment', async () => {
    await page.goto(srv.base + '/stacks/new');
    const editor = page.getByLabel('Stack document (YAML)');
    // a syntax error is reported at its line
    await editor.fill('apiVersion: infraflow.dev/v1\nkind: Stack\nmetadata: { name: gated, project: default }\nspec:\n  resources:\n    sg: { kind: network/SecurityGroup, spec: { description: [ } }\n');
    await expect.poll(() => page.locator('.field-error').first().textContent(), { timeout: 30_000 }).toBe('Problem at line 6');
    expect(await editor.getAttribute('aria-invalid')).toBe('true');
    await editor.fill('apiVersion: infraflow.dev/v1\nkind: Stack\nmetadata: { name: gated, project: default }\nspec:\n  resources:\n    sg: { kind: network/SecurityGroup, spec: { descriptionn: typo } }\n');
    await expect.poll(() => page.getByRole('alert').first().textContent(), { timeout: 30_000 }).toMatch(/descriptionn/);
    await editor.fill('apiVersion: infraflow.dev/v1\nkind: Stack\nmetadata: { name: gated, project: default }\nspec:\n  resources:\n    sg: { kind: network/SecurityGroup, spec: { description: gated } }\n  workflows:\n    preDeploy:\n      - { name: ask, type: approval, message: "open the firewall?" }\n');
    await expect.poll(() => page.getByTestId('plan').textContent(), { timeout: 30_000 }).toContain('1 to create');
    await accessible(page, 'the stack editor');
    await page.getByRole('button', { name: 'Apply' }).click();
    await page.getByRole('heading', { name: 'Approval needed' }).waitFor({ timeout: 60_000 });
    await page.getByLabel('Comment').fill('approved by the e2e test');
    await page.getByRole('button', { name: 'Approve' }).click();
    await expect.poll(async () => (await srv.ctx.stacks.get('gated', { project: 'default' })).status, { timeout: 120_000 }).toBe('applied');
    await expect.poll(() => page.locator('p', { hasText: 'revision' }).first().textContent(), { timeout: 30_000 }).toContain('applied');
    await accessible(page, 'the stack page');
    await screenshot(page, 'stack-approved');
  });

  it('runs the identity workflow: user → group → role with permissions → project → assignment', async () => {
    await page.goto(srv.base + '/identity/users');
    await page.getByLabel('User name').fill('Bad Name');
    await page.getByRole('button', { name: 'Create user' }).click();
    await expect.poll(() => page.getByLabel('User name').getAttribute('aria-invalid')).toBe('true');
    await accessible(page, 'the users page with an invalid field');
    await page.getByLabel('User name').fill('dana');
    await page.getByLabel('Password (empty: sign-in through the identity provider only)').fill('dana-password-123');
    await page.getByRole('button', { name: 'Create user' }).click();
    await page.getByRole('cell', { name: 'dana', exact: true }).waitFor();
    await page.goto(srv.base + '/identity/groups');
    await page.getByLabel('Group name').fill('operators');
    await page.getByRole('button', { name: 'Create group' }).click();
    await page.getByRole('cell', { name: /^operators/ }).waitFor();
    await page.goto(srv.base + '/identity/users');
    await page.getByRole('row', { name: /dana/ }).getByRole('button', { name: 'Groups…' }).click();
    await page.getByLabel('Add to group').selectOption({ label: 'operators' });
    await page.getByRole('button', { name: 'Add to group' }).click();
    await expect.poll(() => page.locator('.subcard p').textContent()).toBe('operators');
    await page.goto(srv.base + '/identity/roles');
    await page.getByLabel('Role name').fill('run-operator');
    await page.getByRole('checkbox', { name: /^runs:read/ }).check();
    await page.getByRole('checkbox', { name: /^runs:operate/ }).check();
    await page.getByRole('button', { name: 'Create role' }).click();
    await page.getByRole('cell', { name: 'run-operator' }).waitFor();
    await page.goto(srv.base + '/identity/projects');
    await page.getByLabel('Project name').fill('payments');
    await page.getByRole('button', { name: 'Create project' }).click();
    await page.getByRole('listitem').filter({ hasText: 'payments' }).waitFor();
    await page.goto(srv.base + '/identity/assignments');
    await page.getByLabel('User or group').selectOption({ label: 'operators' });
    await page.getByLabel('Role', { exact: true }).selectOption('run-operator');
    await page.getByLabel('Project', { exact: true }).last().selectOption('payments');
    await page.getByRole('button', { name: 'Assign role' }).click();
    await page.getByRole('cell', { name: 'group operators', exact: true }).waitFor();
    await page.goto(srv.base + '/identity/groups');
    await expect.poll(() => page.getByRole('row', { name: /operators/ }).textContent()).toContain('run-operator on payments');
    // the rights are real: dana holds runs:operate on payments through the group
    const whoami = await (await fetch(srv.base + '/api/v1/auth/login', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ name: 'dana', password: 'dana-password-123' }) })).json() as { token: string };
    const me = await (await fetch(srv.base + '/api/v1/auth/whoami', { headers: { authorization: `Bearer ${whoami.token}` } })).json() as { projects: Record<string, string[]> };
    expect(me.projects.payments).toEqual(['runs:operate', 'runs:read']);
    await page.goto(srv.base + '/identity/audit');
    await page.getByRole('cell', { name: 'POST /api/v1/role-assignments' }).first().waitFor();
    await accessible(page, 'the audit log');
    await screenshot(page, 'identity-workflow');
  });

  it('retries a failed run from its failed step', async () => {
    const { sim, resources } = srv.ctx;
    // the backend refuses every create attempt the step makes (5, with backoff): the step, then the run, fail
    await sim.setFaults({ rules: [{ kind: 'network/Network', op: 'create', transientRate: 1, attempts: 5 }] });
    const admin = await (await fetch(srv.base + '/api/v1/auth/login', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ name: 'admin', password: 'console-admin-password' }) })).json() as { token: string };
    const created = await (await fetch(srv.base + '/api/v1/resources', { method: 'POST', headers: { 'content-type': 'application/json', authorization: `Bearer ${admin.token}` }, body: JSON.stringify({ project: 'default', kind: 'network/Network', name: 'flaky-net', spec: {} }) })).json() as { run: { id: string }; resource: { id: string } };
    await expect.poll(async () => (await srv.ctx.engine.get(created.run.id)).status, { timeout: 120_000 }).toBe('failed');
    await sim.setFaults({ rules: [] });
    await page.goto(`${srv.base}/runs/${created.run.id}`);
    await expect.poll(() => page.locator('.step-failed').first().textContent(), { timeout: 30_000 }).toMatch(/create:/);
    await page.getByRole('button', { name: 'Retry from this step' }).first().click();
    await expect.poll(async () => (await srv.ctx.engine.get(created.run.id)).status, { timeout: 120_000 }).toBe('succeeded');
    await expect.poll(() => page.locator('main p').first().textContent(), { timeout: 30_000 }).toContain('succeeded');
    expect((await resources.get(created.resource.id)).status.phase).toBe('ready');
    await accessible(page, 'the run page');
    await screenshot(page, 'run-retried');
  });

  it('shows 100,000 resources a page (one request) at a time, scrolled and filtered on the server', async () => {
    const requests: string[] = [];
    page.on('request', (r) => {
      if (new URL(r.url()).pathname === '/api/v1/resources') requests.push(r.url());
    });
    await page.getByRole('combobox', { name: 'Project' }).selectOption('bulk').catch(() => undefined);
    await page.goto(srv.base + '/resources');
    await page.getByRole('combobox', { name: 'Project' }).selectOption('bulk');
    await expect.poll(() => page.getByTestId('resource-count').textContent(), { timeout: 60_000 }).toBe('500+ resources');
    expect(await page.locator('.vbody [role=row]').count()).toBeLessThan(120); // only what is on screen is in the DOM
    for (let i = 0; i < 3; i++) {
      await page.locator('.vbody').evaluate((el) => el.scrollTo(0, el.scrollHeight));
      await expect.poll(() => page.getByTestId('resource-count').textContent(), { timeout: 60_000 }).toBe(`${((i + 2) * 500).toLocaleString('en-US')}+ resources`);
    }
    const pages = requests.filter((u) => new URL(u).searchParams.get('project') === 'bulk');
    expect(pages).toHaveLength(4); // one request per page of 500, none per row
    await page.getByLabel('Name starts with').fill('bulk-09999');
    await page.getByLabel('Labels').fill('tier=web');
    await expect.poll(() => page.getByTestId('resource-count').textContent(), { timeout: 60_000 }).toBe('5 resources');
    expect(await page.getByRole('link', { name: 'bulk-099999' }).isVisible()).toBe(true);
    await accessible(page, 'the resource list');
    await screenshot(page, 'resources-100k');
  });

  it('signs in through an OpenID provider', async () => {
    const ops = await srv.ctx.store.db.selectFrom('iam_groups').select('id').where('name', '=', 'operators').executeTakeFirst();
    expect(ops).toBeTruthy();
    provider = await startTestProvider({ redirectUris: [`${srv.base}/api/v1/auth/oidc/callback`], postLogoutRedirectUris: [`${srv.base}/`], accounts: { erin: { groups: ['operators'], name: 'Erin Example' } } });
    const deps = srv.deps;
    const signin = deps.areas!.signin as SignInSettings;
    deps.areas!.signin = {
      ...signin,
      oidc: new OidcFederation({ iam: deps.iam, redirectUri: `${srv.base}/api/v1/auth/oidc/callback`, sessionTtlMs: 3600_000, settings: { issuer: provider.issuer, clientId: provider.clientId, clientSecret: provider.clientSecret, scopes: 'openid profile email groups offline_access', displayName: 'Test IdP', groupsClaim: 'groups', groupMap: {}, usernameClaim: 'preferred_username', refreshSeconds: 300, allowInsecure: true } }),
    };
    const fresh = await launchBrowser();
    try {
      const p = fresh.page;
      await p.goto(srv.base + '/runs');
      await p.getByRole('link', { name: 'Sign in with Test IdP' }).click();
      await p.locator('input[name=login]').fill('erin');
      await p.locator('input[name=password]').fill('any');
      await p.locator('button[type=submit]').click();
      await p.locator('button[type=submit]').click(); // consent
      await p.getByRole('navigation', { name: 'Main' }).waitFor();
      expect(new URL(p.url()).pathname).toBe('/runs');
      await p.getByText('Erin Example').waitFor();
      const cookies = await fresh.context.cookies(srv.base);
      expect(cookies.find((c) => c.name === 'infraflow_session')).toMatchObject({ httpOnly: true, sameSite: 'Lax' });
      await accessible(p, 'the console after OIDC sign-in');
      await screenshot(p, 'oidc-sign-in');
    } finally {
      await fresh.close();
    }
  });
});
