export { BmcError, bmcFailureOf, type BmcDriver, type BmcFailure, type BmcTarget, type BootDevice, type BootOverride, type PowerAction, type PowerState } from './driver.js';
export { PowerProvider, withBmcRetry, type BmcCredentialSource, type PowerProviderOptions } from './provider.js';
