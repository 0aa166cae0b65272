export { OvsSwitchDriver, type OvsDriverOptions } from './driver.js';
