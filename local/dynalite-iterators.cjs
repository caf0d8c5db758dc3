// Preloaded into dynalite (`node --require dynalite-iterators.cjs dynalite/cli.js ...`).
//
// dynalite 4.0.0 turns LevelDB iterators into streams whose destroy() closes the iterator only
// `if (iterator.return)` (db/index.js, createKeyStream/createValueStream), a method of async
// generators that abstract-level 3's iterators do not have. So every Query and Scan (finished,
// or stopped early by Limit or the 1 MB page) left its classic-level iterator open, and an open
// LevelDB iterator pins the memtables and table files it read: dynalite grew to 1.7 GB after
// 36,000 queries (tmp probe; 155 MB with this), and to 1.3 GB an hour under the demo. Giving the
// iterators the `return()` dynalite looks for makes its own destroy() close them. Nothing else
// in dynalite or abstract-level calls `return` on an iterator.
'use strict';
const { dirname } = require('node:path');

// The copy of abstract-level that dynalite's own `level` -> `classic-level` loads.
const from = (name, dir) => dirname(require.resolve(name, { paths: [dir] }));
const classicLevel = from('classic-level', from('level', from('dynalite', __dirname)));
const { AbstractIterator } = require(require.resolve('abstract-level', { paths: [classicLevel] }));

// Key, value and entry iterators all inherit from abstract-level's (unexported) common base.
const common = Object.getPrototypeOf(AbstractIterator.prototype);
if (typeof common.return !== 'function') {
  common.return = async function () {
    await this.close();
    return { done: true, value: undefined };
  };
}
