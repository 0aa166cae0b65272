/**
 * Imported first by the server's entry point: refuses, with one readable
 * line, a Node.js older than the one the project runs on (its native SQLite
 * driver crashes on Node.js 20). `npm start` and `npm test` run the pinned
 * Node.js 24 from the `node` devDependency.
 */
const MIN_MAJOR = 24;
const major = Number(process.versions.node.split('.')[0]);
if (major < MIN_MAJOR) {
  process.stderr.write(`infraflow: Node.js ${process.versions.node} is too old; it needs Node.js ${MIN_MAJOR} or newer (the project pins it as a devDependency): run it with \`npm start\`, which uses the pinned version\n`);
  process.exit(1);
}
export {};
