#!/usr/bin/env node
// Rewrites CUDA launches for the emulator's host compiler:
//   kernel<T><<<grid, block, shm, stream>>>(args)
// becomes
//   ::bkemu::cfg(grid, block, shm, stream) << [&] { kernel<T>(args); }
// Usage: launch-rewrite.mjs in.cu out.cc
import { readFileSync, writeFileSync } from 'node:fs';

const [input, output] = process.argv.slice(2);
if (!input || !output) {
  console.error('usage: launch-rewrite.mjs in.cu out.cc');
  process.exit(2);
}
const src = readFileSync(input, 'utf8');

/** Index just past the bracket matching the opening one at `open`. */
function matchForward(s, open, o, c) {
  let depth = 0;
  for (let i = open; i < s.length; i++) {
    if (s[i] === o) depth++;
    else if (s[i] === c && --depth === 0) return i + 1;
  }
  throw new Error(`${input}: unbalanced '${o}' at offset ${open}`);
}

/** Start of the kernel expression ending just before `end`: a name, maybe qualified, maybe with <template args>. */
function kernelStart(s, end) {
  let i = end;
  if (s[i - 1] === '>') {
    let depth = 0;
    for (i = end - 1; i >= 0; i--) {
      if (s[i] === '>') depth++;
      else if (s[i] === '<' && --depth === 0) break;
    }
  }
  while (i > 0 && /[\w:]/.test(s[i - 1])) i--;
  return i;
}

let out = '';
let pos = 0;
let count = 0;
for (;;) {
  const at = src.indexOf('<<<', pos);
  if (at < 0) break;
  const start = kernelStart(src, at);
  const kernel = src.slice(start, at);
  const close = src.indexOf('>>>', at);
  const open = src.indexOf('(', close);
  if (close < 0 || kernel === '' || src.slice(close + 3, open).trim() !== '') {
    throw new Error(`${input}: cannot parse the launch at offset ${at}`);
  }
  const end = matchForward(src, open, '(', ')');
  out += src.slice(pos, start) +
    `::bkemu::cfg(${src.slice(at + 3, close)}) << [&] { ${kernel}${src.slice(open, end)}; }`;
  pos = end;
  count++;
}
out += src.slice(pos);
writeFileSync(output, `#line 1 "${input}"\n${out}`);
console.log(`launch-rewrite: ${input}: ${count} launches`);
