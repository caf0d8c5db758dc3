// Preloaded into dynalite by workarounds.test.ts (NODE_OPTIONS=--require): writes the number of
// LevelDB iterators open right now to $TANDEM_ITERATORS_FILE, whenever it changes. abstract-level
// attaches every open iterator to its database and detaches it on close, so the count is exact.
'use strict';
const { writeFileSync } = require('node:fs');
const { dirname } = require('node:path');

const from = (name, dir) => dirname(require.resolve(name, { paths: [dir] }));
const { AbstractLevel } = require(
  require.resolve('abstract-level', { paths: [from('classic-level', from('level', from('dynalite', __dirname)))] }),
);
const open = new Set();
const { attachResource, detachResource } = AbstractLevel.prototype;
AbstractLevel.prototype.attachResource = function (resource) {
  if (typeof resource.next === 'function') open.add(resource);
  return attachResource.call(this, resource);
};
AbstractLevel.prototype.detachResource = function (resource) {
  open.delete(resource);
  return detachResource.call(this, resource);
};
let written = -1;
setInterval(() => {
  if (open.size === written) return;
  written = open.size;
  writeFileSync(process.env.TANDEM_ITERATORS_FILE, String(written));
}, 20).unref();
