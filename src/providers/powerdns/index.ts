export { PowerDnsProvider, canonicalZone, recordFqdn, reverseName, toContent, fromContent, type PowerDnsOptions } from './provider.js';
