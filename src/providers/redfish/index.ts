export { RedfishDriver, type RedfishOptions } from './driver.js';
