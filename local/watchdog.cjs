// Preloaded into every emulator child (`node --require watchdog.cjs ...`): the
// child exits when its parent is gone, even after a SIGKILL of the parent,
// because the pipe on its stdin closes. No orphans, whatever kills the parent.
'use strict';
process.stdin.on('end', () => process.exit(0));
process.stdin.on('error', () => process.exit(0));
process.stdin.resume();
const parent = Number(process.env.TANDEM_PARENT_PID);
if (parent > 0) {
  setInterval(() => {
    try {
      process.kill(parent, 0);
    } catch {
      process.exit(0);
    }
  }, 1000).unref();
}
