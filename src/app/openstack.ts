import type { Config } from '../core/config.js';
import { ValidationError } from '../core/errors.js';
import type { SecretBox } from '../core/secrets.js';
import { Iam } from '../iam/service.js';
import type { Provider } from '../resources/types.js';
import type { Store } from '../store/store.js';
import { OpenStackProvider } from '../providers/openstack/index.js';

/**
 * The `openstack` provider from configuration (`openstack:` in the config
 * file), its password or application credential secret read from the secret
 * store (`secret: <project>/<name>`) or INFRAFLOW_OPENSTACK_PASSWORD. None
 * when the section is absent.
 */
export async function openStackFromConfig(config: Config, store: Store, box: SecretBox, env: NodeJS.ProcessEnv = process.env): Promise<Provider[]> {
  const c = config.openstack;
  if (!c) return [];
  let secret = env.INFRAFLOW_OPENSTACK_PASSWORD;
  if (c.secret) {
    const [project, name] = c.secret.split('/') as [string, string];
    const iam = new Iam({ store, box });
    const found = (await iam.listSecrets({ projects: [project], name, limit: 1 })).items[0];
    if (!found) throw new ValidationError('config.openstack_secret', `openstack.secret: no secret ${name} in project ${project}; create it (infraflow secret create) or unset openstack.secret`);
    secret = await iam.revealSecret(found.id);
  }
  if (!secret) throw new ValidationError('config.openstack_secret', 'openstack: give secret: <project>/<name> (an Infraflow secret with the password) or set INFRAFLOW_OPENSTACK_PASSWORD');
  return [new OpenStackProvider({
    credentials: {
      authUrl: c.authUrl, userDomain: c.userDomain, projectDomain: c.projectDomain,
      ...(c.applicationCredentialId ? { applicationCredentialId: c.applicationCredentialId, applicationCredentialSecret: secret } : { username: c.username, password: secret, projectName: c.projectName }),
      ...(c.region ? { region: c.region } : {}),
    },
  })];
}
