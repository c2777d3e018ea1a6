/**
 * The kernel table (src/kernel-table.ts) against the C header it describes
 * (native/include/bagua_kernels.h), read as text: every bk_* kernel's name,
 * parameter types and order, the status enum and the ABI version. Either side
 * changed alone fails here.
 */
import test from 'ava';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import {
  BK_ABI_VERSION, BK_STATUS, KERNELS, KERNEL_METHODS, KERNEL_NAMES, KERNEL_PARAMS, kernelSignature,
} from '../src/index.js';
import { paramDecl } from '../src/kernel-table.js';

// test/ runs from dist/test/: the header is found from either
const HEADER = [
  new URL('../../native/include/bagua_kernels.h', import.meta.url),
  new URL('../native/include/bagua_kernels.h', import.meta.url),
].map((u) => fileURLToPath(u)).find((p) => {
  try {
    readFileSync(p);
    return true;
  } catch {
    return false;
  }
})!;

/** The header without comments, whitespace runs folded to one space. */
function headerText(): string {
  return readFileSync(HEADER, 'utf8').replace(/\/\*[\s\S]*?\*\//g, ' ').replace(/\/\/[^\n]*/g, ' ')
    .replace(/\s+/g, ' ');
}

interface CFunction { ret: string; name: string; params: string[] }

/** Every `BK_API <ret> bk_...(...);` declaration, parameters normalised (`float *x`, `const int64_t *shape`). */
function parseFunctions(text: string): CFunction[] {
  const out: CFunction[] = [];
  for (const m of text.matchAll(/BK_API ([\w ]+?\**) ?(bk_\w+)\s*\(([^)]*)\)\s*;/g)) {
    const params = m[3]!.trim() === 'void' ? [] : m[3]!.split(',').map((p) =>
      p.trim().replace(/\s*\*\s*/g, ' *').replace(/\s+/g, ' '));
    out.push({ ret: m[1]!.trim(), name: m[2]!, params });
  }
  return out;
}

/** The kernels: every function whose last parameter is `void *stream`. */
function headerKernels(): CFunction[] {
  return parseFunctions(headerText()).filter((f) => f.params.at(-1) === 'void *stream');
}

test('the parser reads the header: 48 kernels and the library functions', (t) => {
  const all = parseFunctions(headerText());
  t.true(all.some((f) => f.name === 'bk_abi_version' && f.ret === 'int32_t' && f.params.length === 0));
  t.true(all.some((f) => f.name === 'bk_last_error' && f.ret === 'const char *'));
  const bn = all.find((f) => f.name === 'bk_bn_merge_stats_f32')!;
  t.is(bn.params[9], 'float *running_var', 'nullable comments stripped');
  t.is(headerKernels().length, 48);
});

test('every kernel of the header is in the table, with the same parameters in the same order', (t) => {
  const header = headerKernels();
  t.deepEqual(header.map((f) => f.name).sort(), [...KERNEL_NAMES].sort(), 'the same kernels');
  for (const f of header) {
    t.is(f.ret, 'int', `${f.name} returns a bk_status as int`);
    const m = KERNEL_METHODS.find((k) => KERNELS[k].cname === f.name)!;
    t.deepEqual(KERNELS[m].params.map(paramDecl), f.params.slice(0, -1), `${f.name}: parameters`);
    t.is(kernelSignature(KERNELS[m]), `int ${f.name}(${f.params.join(', ')})`, `${f.name}: koffi declaration`);
    t.is(KERNEL_PARAMS[KERNELS[m].cname], f.params.slice(0, -1).join(', '));
  }
});

test('the table is consistent: unique C names, one ndim per shape, optional only where nullable', (t) => {
  t.is(new Set(KERNEL_NAMES).size, KERNEL_NAMES.length);
  const text = readFileSync(HEADER, 'utf8').replace(/\s+/g, ' ');
  for (const m of KERNEL_METHODS) {
    const spec = KERNELS[m];
    const kinds = spec.params.map((p) => p.kind);
    t.is(kinds.includes('shape'), kinds.includes('ndim'), `${m}: shape and ndim go together`);
    const decl = text.slice(text.indexOf(` ${spec.cname}(`), text.indexOf(';', text.indexOf(` ${spec.cname}(`)));
    for (const p of spec.params) {
      if (p.kind !== 'operand') continue;
      const nullable = new RegExp(`\\*\\s*${p.cname}\\s*/\\* nullable \\*/`).test(decl);
      t.is(p.optional, nullable, `${m}: ${p.name} optional iff the header marks ${p.cname} nullable`);
      t.is(p.role === 'in', paramDecl(p).startsWith('const '), `${m}: ${p.name} const iff an input`);
    }
  }
});

test('the status enum and the ABI version match the header', (t) => {
  const text = headerText();
  const version = /#define BK_ABI_VERSION (\d+)/.exec(text);
  t.truthy(version, 'BK_ABI_VERSION is defined in the header');
  t.is(Number(version![1]), BK_ABI_VERSION);
  const body = /typedef enum bk_status \{([^}]*)\} bk_status;/.exec(text);
  t.truthy(body, 'the bk_status enum is in the header');
  const values = Object.fromEntries(body![1]!.split(',').map((e) => e.trim()).filter(Boolean).map((e) => {
    const [k, v] = e.split('=').map((x) => x.trim());
    return [k!, Number(v)];
  }));
  t.deepEqual(values, { ...BK_STATUS });
});
