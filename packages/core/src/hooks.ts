/**
 * Autograd hooks: per-leaf "gradient ready" hooks (PyTorch's AccumulateGrad
 * post-hooks, the signal DDP starts its bucket all-reduces on) and listeners
 * told when a backward pass starts. The registry is keyed weakly by the leaf,
 * so hooks never keep a tensor (or its storage) alive.
 */
import type { Tensor } from './tensor.js';

export interface HookHandle {
  /** Unregisters the hook; calling it again does nothing. */
  remove(): void;
}

/** Called once per backward with the leaf whose `.grad` is final for that backward. */
export type GradReadyHook = (leaf: Tensor) => void;

const gradReady = new WeakMap<Tensor, Set<GradReadyHook>>();
/** Leaves with hooks (a leaf collected without remove() stays counted: backward then only tracks more than it needs). */
let hookedLeaves = 0;

/**
 * Registers fn to run when backward has finished accumulating into `leaf.grad`
 * (every path from the root to the leaf has delivered its part), once per
 * backward that gave the leaf a gradient. It runs inside backward, with
 * recording off: tensors it makes and does not keep() are released when
 * backward returns. The same function registered twice runs once.
 */
export function registerGradReadyHook(leaf: Tensor, fn: GradReadyHook): HookHandle {
  if (leaf.gradFn !== null) {
    throw new Error('registerGradReadyHook: the tensor is not a leaf (it was made by an op that records a gradient)');
  }
  let hooks = gradReady.get(leaf);
  if (!hooks) {
    gradReady.set(leaf, (hooks = new Set()));
    hookedLeaves++;
  }
  hooks.add(fn);
  const set = hooks;
  return {
    remove() {
      set.delete(fn);
      if (set.size === 0 && gradReady.get(leaf) === set) {
        gradReady.delete(leaf);
        hookedLeaves--;
      }
    },
  };
}

/** @internal backward's: whether any hook or listener is registered (else it tracks nothing). */
export function gradHooksInUse(): boolean {
  return hookedLeaves > 0 || starts.size > 0;
}

/** @internal backward's: whether `leaf` has hooks (only those leaves are tracked). */
export function hasGradReadyHooks(leaf: Tensor): boolean {
  return gradReady.has(leaf);
}

/** @internal backward's: runs the leaf's hooks (a copy: a hook may remove itself). */
export function fireGradReady(leaf: Tensor): void {
  const hooks = gradReady.get(leaf);
  if (hooks) for (const fn of [...hooks]) fn(leaf);
}

/** What a backward-start listener learns about the pass that is starting. */
export interface BackwardStart {
  /** Whether this pass can deliver a gradient to `leaf` (it is reachable from the root). */
  reaches(leaf: Tensor): boolean;
}

const starts = new Set<(info: BackwardStart) => void>();

/**
 * Registers fn to run at the start of every backward pass, before any
 * gradient is computed (a data-parallel wrapper marks the parameters this
 * pass cannot reach as ready at once, as DDP's find_unused_parameters does).
 */
export function onBackwardStart(fn: (info: BackwardStart) => void): HookHandle {
  starts.add(fn);
  return { remove: () => void starts.delete(fn) };
}

/** @internal backward's */
export function fireBackwardStart(info: BackwardStart): void {
  for (const fn of [...starts]) fn(info);
}
