import { describe, expect, it } from 'vitest';
import { classifyIpmitool } from './driver.js';

/** ipmitool's own messages (1.8.19, -v) → BMC failures; the real-BMC suite (test/real/backends/ipmi.test.ts) covers auth and unreachable end to end. */
describe('classifyIpmitool', () => {
  it('maps ipmitool messages to failures', () => {
    expect(classifyIpmitool('Loading IANA PEN Registry...\n> RAKP 2 HMAC is invalid\nError: Unable to establish IPMI v2 / RMCP+ session')).toBe('auth');
    expect(classifyIpmitool('> RAKP 2 message indicates an error : unauthorized name\nError: Unable to establish IPMI v2 / RMCP+ session')).toBe('auth');
    expect(classifyIpmitool('Activate Session command failed\nError: Unable to establish LAN session')).toBe('auth');
    expect(classifyIpmitool('Get Auth Capabilities error\nError issuing Get Channel Authentication Capabilities request\nError: Unable to establish IPMI v2 / RMCP+ session')).toBe('unreachable');
    expect(classifyIpmitool('Set Chassis Power Control to Up/On failed: Node busy')).toBe('busy');
    expect(classifyIpmitool('Set Chassis Power Control to Cycle failed: Invalid command')).toBe('unsupported');
    expect(classifyIpmitool('something else entirely')).toBe('protocol');
  });
});
