/**
 * Who holds the user's reference to a tensor, so that its storage goes back
 * without the garbage collector (README, "Memory"). Every tensor an op or a
 * factory makes joins the innermost open scope, or else the current step:
 * - a scope (`scope(fn)`, and every Module.forward) releases, when it ends,
 *   what it made and does not return; what it returns joins the enclosing one;
 * - a step ends at each optimizer.step() or endStep(); a tensor is released at
 *   the end of the step after the last one in which it was used (passed to an
 *   op, read): values stay readable through the next step, and data used every
 *   step lives on. What was made before the first step ended (the set-up) is kept.
 * `keep()` takes a tensor out of its scope or step for good. The autograd graph
 * and views hold storages by their own references, so releasing the user's
 * reference never frees memory that backward still needs.
 */
import { Tensor } from './tensor.js';

export class Scope {
  readonly tensors: Tensor[] = [];
  /** Completes "released ..." in the error a later use of one of these tensors gets. */
  constructor(readonly why: string) {}

  /** Releases every tensor this scope still owns, except those in `escaping`, which move to `parent`. */
  close(parent: Scope | null, escaping?: ReadonlySet<Tensor>): void {
    for (const t of this.tensors) {
      if (t._owner !== this) continue;
      if (parent && escaping?.has(t)) parent.adopt(t);
      else t._release(this.why);
    }
    this.tensors.length = 0;
  }

  adopt(t: Tensor): void {
    t._owner = this;
    this.tensors.push(t);
  }
}

const STEP_RELEASE = 'at the end of the step after the last one that used it (optimizer.step() and endStep() end a step)';

const open: Scope[] = [];
let current = new Scope(STEP_RELEASE);
let previous: Scope | null = null;

/** The number of the running step (steps ended so far): tensors note the step of their last use. */
export const clock = { step: 0 };

/** The scope a new tensor joins. */
export function currentScope(): Scope {
  return open.length ? open[open.length - 1] : current;
}

/** The optimizers that stepped in the running step: a second step of one of them starts the next step. */
const steppedBy = new Set<object>();

/**
 * Ends the current step. Optimizers call it from step(), naming themselves:
 * with several optimizers (a GAN, two models) a step lasts until one of them
 * steps again, so a step is one iteration of the training loop. Called with no
 * argument it always ends the step: do so once per iteration in loops without
 * an optimizer (evaluation).
 */
export function endStep(by?: object): void {
  if (by !== undefined && !steppedBy.has(by)) {
    steppedBy.add(by);
    return;
  }
  steppedBy.clear();
  if (by !== undefined) steppedBy.add(by);
  const ending = clock.step++;
  if (ending === 0) {
    // The set-up (datasets, constants) and the first step: kept, never released by steps.
    for (const t of current.tensors) if (t._owner === current) t.keep();
    current.tensors.length = 0;
    return;
  }
  if (previous) {
    // What the step before made: used in the step now ending, it is looked at again a step later.
    for (const t of previous.tensors) if (t._owner === previous && t._usedIn === ending) current.adopt(t);
    previous.close(null);
  }
  previous = current;
  current = new Scope(STEP_RELEASE);
}

/**
 * A tensor whose owner let go of it while the user may still hold it (a
 * replaced gradient): released at the end of the running step unless used
 * before then, as any tensor of the step before.
 */
export function handOverToStep(t: Tensor): void {
  t._usedIn = clock.step - 1;
  (previous ?? current).adopt(t);
}

/** The tensors reachable from a returned value: a tensor, or arrays and plain objects of them. */
function collect(value: unknown, into: Set<Tensor>, depth = 0): void {
  if (value instanceof Tensor) into.add(value);
  else if (depth < 4 && Array.isArray(value)) for (const v of value) collect(v, into, depth + 1);
  else if (depth < 4 && value !== null && typeof value === 'object') {
    const proto = Object.getPrototypeOf(value);
    if (proto === Object.prototype || proto === null) {
      for (const v of Object.values(value)) collect(v, into, depth + 1);
    }
  }
}

/**
 * Runs fn in a scope: the tensors it makes and does not return (as a tensor, or
 * inside arrays and plain objects) are released when it returns or throws.
 */
export function scope<T>(fn: () => T, why = 'when its scope() ended (it was not returned)'): T {
  const s = new Scope(why);
  open.push(s);
  let result: T;
  try {
    result = fn();
  } catch (e) {
    open.pop();
    s.close(null);
    throw e;
  }
  open.pop();
  const escaping = new Set<Tensor>();
  collect(result, escaping);
  s.close(currentScope(), escaping);
  return result;
}
