export { IpmiDriver, classifyIpmitool, type IpmiOptions } from './driver.js';
