export { OpenStackProvider, KEY_PREFIX, type OpenStackProviderOptions } from './provider.js';
export { OpenStackClient, errorFor, type OpenStackCredentials } from './client.js';
