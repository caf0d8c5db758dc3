// Preloaded into an emulator child by a test (NODE_OPTIONS=--require ...): shifts its clock by
// TANDEM_CLOCK_SHIFT_MS, so records put through it carry arrival times in the past.
'use strict';
const shift = Number(process.env.TANDEM_CLOCK_SHIFT_MS ?? 0);
const realNow = Date.now;
Date.now = () => realNow() + shift;
