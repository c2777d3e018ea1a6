import type { Tensor } from '../tensor.js';
import { Module } from './module.js';

/**
 * PyTorch's nn.ModuleList: children registered as '0', '1', ..., so parameters(),
 * stateDict() and tree walks (convertSyncBatchnorm) see them. It has no forward of
 * its own: the owner iterates it.
 */
export class ModuleList extends Module {
  constructor(modules: Iterable<Module> = []) {
    super();
    this.extend(modules);
  }

  get length(): number {
    return [...this.children()].length;
  }

  append(module: Module): this {
    if (!(module instanceof Module)) throw new Error(`ModuleList: append expects a Module, got ${String(module)}`);
    this.addModule(String(this.length), module);
    return this;
  }

  extend(modules: Iterable<Module>): this {
    for (const m of modules) this.append(m);
    return this;
  }

  /** The module at i (negative counts from the end). */
  at(i: number): Module {
    const n = this.length;
    const m = Number.isInteger(i) ? [...this.children()][i < 0 ? i + n : i] : undefined;
    if (!m) throw new Error(`ModuleList: index ${i} out of range for ${n} modules`);
    return m;
  }

  /** Replaces the module at i in place (its name and position stay). */
  set(i: number, module: Module): void {
    const n = this.length;
    this.at(i);
    this.addModule(String(i < 0 ? i + n : i), module);
  }

  [Symbol.iterator](): IterableIterator<Module> {
    return this.children();
  }

  forward(..._inputs: Tensor[]): Tensor {
    throw new Error('ModuleList has no forward: iterate it and call its modules');
  }
}

/**
 * PyTorch's nn.ModuleDict: children registered under their keys, in insertion
 * order. Keys must be valid module names (no '.', not a method name).
 */
export class ModuleDict extends Module {
  constructor(modules: Record<string, Module> | Iterable<[string, Module]> = {}) {
    super();
    this.update(modules);
  }

  get size(): number {
    return [...this.children()].length;
  }

  set(key: string, module: Module): this {
    if (!(module instanceof Module)) throw new Error(`ModuleDict: '${key}' must be a Module, got ${String(module)}`);
    this.addModule(key, module);
    return this;
  }

  get(key: string): Module {
    for (const [name, m] of this.namedChildren()) if (name === key) return m;
    throw new Error(`ModuleDict: no module '${key}' (keys: ${[...this.keys()].join(', ')})`);
  }

  has(key: string): boolean {
    for (const name of this.keys()) if (name === key) return true;
    return false;
  }

  update(modules: Record<string, Module> | Iterable<[string, Module]>): this {
    const entries = Symbol.iterator in modules ? modules as Iterable<[string, Module]> : Object.entries(modules);
    for (const [k, m] of entries) this.set(k, m);
    return this;
  }

  *keys(): IterableIterator<string> {
    for (const [name] of this.namedChildren()) yield name;
  }

  *values(): IterableIterator<Module> {
    yield* this.children();
  }

  *entries(): IterableIterator<[string, Module]> {
    yield* this.namedChildren();
  }

  [Symbol.iterator](): IterableIterator<string> {
    return this.keys();
  }

  forward(..._inputs: Tensor[]): Tensor {
    throw new Error('ModuleDict has no forward: look its modules up and call them');
  }
}
