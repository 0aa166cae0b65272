export { KeaProvider, cidrContains, ipv4ToInt, type KeaOptions } from './provider.js';
