#!/usr/bin/env node
// bagua-launch: runs a script as the ranks of a bagua job (see `bagua-launch --help`).
import { main } from '../dist/src/launch/cli.js';

const code = await main(process.argv.slice(2));
// Exit explicitly: a rank thread's leftover handle must not keep the launcher alive.
process.exit(code);
