/**
 * Imported first by the server's entry point: refuses, with one readable
 * line, a Node.js older than the project supports (22.13, as `engines` in
 * package.json and the README say; its native SQLite driver crashes on
 * Node.js 20). `npm start` and `npm test` run the Node.js 24 LTS pinned as a
 * devDependency whatever Node.js the machine has.
 */
const MIN = [22, 13] as const;
const [major = 0, minor = 0] = process.versions.node.split('.').map(Number);
if (major < MIN[0] || (major === MIN[0] && minor < MIN[1])) {
  process.stderr.write(`infraflow: Node.js ${process.versions.node} is too old; it needs Node.js ${MIN.join('.')} or newer: install a newer Node.js, or run it with \`npm start\`, which uses the Node.js 24 the project pins\n`);
  process.exit(1);
}
export {};
