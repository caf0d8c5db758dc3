#!/usr/bin/env node
// `npx tandem`: loads the TypeScript CLI through tsx's loader, in this process
// (so signals reach the CLI itself, and Ctrl-C stops the local cloud cleanly).
import { register } from 'tsx/esm/api';

register();
await import('./tandem.ts');
