export type { SwitchDriver, PortChange, PortState, PortMode } from './driver.js';
export { SwitchPortProvider, portObserved, type SwitchPortProviderOptions } from './provider.js';
export { serverSwitchPorts, accessPortSpecs } from './cabling.js';
