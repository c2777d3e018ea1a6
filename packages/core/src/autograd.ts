/**
 * Define-by-run autograd with deterministic memory: each node owns views of
 * the tensors its gradient rule saved, and frees them once backward has run
 * it (unless the graph is retained) or once nothing can reach it any more.
 */
import { fmt } from './shape.js';
import { scope } from './lifetime.js';
import { full, type Tensor } from './tensor.js';
import { fireBackwardStart, fireGradReady, gradHooksInUse, hasGradReadyHooks } from './hooks.js';

let gradEnabled = true;

/** Runs fn without recording operations for autograd. */
export function noGrad<T>(fn: () => T): T {
  const prev = gradEnabled;
  gradEnabled = false;
  try {
    return fn();
  } finally {
    gradEnabled = prev;
  }
}

export function isGradEnabled(): boolean {
  return gradEnabled;
}

/** Where an input's gradient goes: the node that made it, the leaf itself, or nowhere. */
type Edge = GradNode | Tensor | null;

/**
 * The gradient rule of one op: the gradients of its inputs given the gradient
 * of its output, from the saved tensors; `needs[i]` says whether input i wants one.
 */
export type BackwardFn<S extends readonly (Tensor | null)[]> =
  (grad: Tensor, saved: S, needs: readonly boolean[]) => readonly (Tensor | null)[];

/** How a non-leaf tensor was made. */
export class GradNode {
  /** The output tensor, plus one per node whose input this node's output is. */
  private refs = 1;
  private saved: (Tensor | null)[] | null;
  /** Set when backward ran this node without retaining the graph. */
  private freed = false;
  readonly needs: readonly boolean[];

  constructor(
    readonly op: string,
    readonly edges: readonly Edge[],
    saved: readonly (Tensor | null)[],
    private readonly fn: BackwardFn<readonly (Tensor | null)[]>,
  ) {
    this.saved = saved.map((t) => (t ? t._alias(op) : null));
    this.needs = edges.map((e) => e !== null);
    for (const e of edges) if (e instanceof GradNode) e.refs++;
  }

  get isFreed(): boolean {
    return this.freed;
  }

  run(grad: Tensor, retainGraph: boolean): readonly (Tensor | null)[] {
    const out = this.fn(grad, this.saved!, this.needs);
    if (!retainGraph) {
      this.releaseSaved();
      this.freed = true;
    }
    return out;
  }

  private releaseSaved(): void {
    if (this.saved) for (const t of this.saved) t?._release('with its autograd node');
    this.saved = null;
  }

  /** Drops one reference; the last frees the node and, in turn, the nodes only it reached. */
  unref(): void {
    const stack: GradNode[] = [this];
    while (stack.length) {
      const n = stack.pop()!;
      if (--n.refs !== 0) continue;
      n.releaseSaved();
      for (const e of n.edges) if (e instanceof GradNode) stack.push(e);
    }
  }
}

/**
 * Records `out` as made by `op` from `inputs` when any input requires a
 * gradient and recording is on. `saved` are the tensors the rule reads (the
 * node keeps its own references to them); the rule is written once, here in
 * core, in terms of other ops and kernels, and serves every backend.
 */
export function recordOp<S extends readonly (Tensor | null)[]>(
  out: Tensor,
  op: string,
  inputs: readonly (Tensor | null)[],
  saved: S,
  backward: BackwardFn<S>,
): Tensor {
  if (!gradEnabled || !inputs.some((t) => t !== null && t.requiresGrad)) return out;
  const edges = inputs.map((t): Edge => (t === null || !t.requiresGrad ? null : (t.gradFn ?? t)));
  out._setGradFn(new GradNode(op, edges, saved, backward as BackwardFn<readonly (Tensor | null)[]>));
  return out;
}

export interface BackwardOptions {
  /** Keep the saved tensors, so that backward can run through this graph again. */
  retainGraph?: boolean;
}

let backwardRuns = 0;

/** How many backward passes have run: wrappers that act once per backward (gradient reduction) compare it. */
export function backwardCount(): number {
  return backwardRuns;
}

/** Why an intermediate gradient was released (the error a later use gets). */
export const USED_GRADIENT = 'by backward, once used (an intermediate gradient)';

/**
 * Runs the graph from `root` backwards, accumulating into the leaves' `.grad`.
 * Everything made on the way (intermediate gradients, temporaries) is released
 * as soon as it is used, or when backward returns.
 */
export function runBackward(root: Tensor, gradient: Tensor | undefined, opts: BackwardOptions): void {
  if (!root.requiresGrad) throw new Error('backward: the tensor does not require grad and has no grad_fn');
  if (gradient !== undefined && gradient.numel !== root.numel) {
    throw new Error(`backward: gradient of shape ${fmt(gradient.shape)} does not match output ${fmt(root.shape)}`);
  }
  if (gradient === undefined && root.numel !== 1) {
    throw new Error(`backward: grad can be implicitly created only for scalar outputs, got shape ${fmt(root.shape)}`);
  }
  const order = root.gradFn ? topoOrder(root.gradFn) : [];
  const retain = opts.retainGraph ?? false;
  // A leaf's gradient is final once every node with an edge to it has run:
  // count those edges per leaf (reachable leaves), and count down as nodes run.
  // Only where hooks listen: a plain backward does none of this.
  const tracking = gradHooksInUse();
  const pending = new Map<Tensor, number>();
  if (tracking) {
    for (const node of order) {
      for (const e of node.edges) if (e !== null && !(e instanceof GradNode)) pending.set(e, (pending.get(e) ?? 0) + 1);
    }
  }
  const received = new Set<Tensor>();
  const settle = (node: GradNode): void => {
    if (!tracking) return;
    for (const e of node.edges) {
      if (e === null || e instanceof GradNode) continue;
      const left = pending.get(e)! - 1;
      pending.set(e, left);
      // Once per backward, and only for a leaf that got a gradient (an unused one is never "ready").
      if (left === 0 && received.delete(e)) fireGradReady(e);
    }
  };
  backwardRuns++;
  if (tracking) fireBackwardStart({ reaches: (leaf) => pending.has(leaf) || leaf === root });
  scope(() => noGrad(() => {
    const seed = gradient === undefined ? full(root.shape, 1, { device: root.device }) : gradient.reshape(root.shape);
    if (!root.gradFn) {
      root._accumulateGrad(seed);
      fireGradReady(root);
      return;
    }
    const grads = new Map<GradNode, Tensor>([[root.gradFn, seed]]);
    for (const node of order) {
      const g = grads.get(node);
      if (!g) {
        settle(node);
        continue;
      }
      grads.delete(node);
      const inGrads = node.run(g, retain);
      // A gradient handed to several inputs reaches each as its own view (shared memory, never written in place).
      const deliveries: [GradNode | Tensor, Tensor][] = [];
      node.edges.forEach((edge, k) => {
        const ig = inGrads[k];
        if (edge && ig) deliveries.push([edge, inGrads.indexOf(ig) === inGrads.lastIndexOf(ig) ? ig : ig._alias(node.op)]);
      });
      const delivered = new Set(deliveries.map(([, t]) => t));
      for (const t of [g, ...inGrads]) if (t && !delivered.has(t)) t._release(USED_GRADIENT);
      for (const [edge, t] of deliveries) {
        if (edge instanceof GradNode) {
          const prev = grads.get(edge);
          grads.set(edge, prev ? prev._addInto(t) : t);
        } else {
          edge._accumulateGrad(t);
          if (tracking && hasGradReadyHooks(edge)) received.add(edge);
        }
      }
      settle(node);
    }
  }), 'by backward (made while it ran)');
}

/** Nodes reachable from `root`, each after every node that feeds it a gradient. */
function topoOrder(root: GradNode): GradNode[] {
  const order: GradNode[] = [];
  const seen = new Set<GradNode>([root]);
  const stack: [GradNode, number][] = [[root, 0]];
  // Iterative depth-first search: deep nets would overflow recursion.
  while (stack.length) {
    const top = stack[stack.length - 1];
    const [node] = top;
    if (node.isFreed) {
      throw new Error(`backward: the graph through '${node.op}' was already freed by an earlier backward; ` +
        'pass { retainGraph: true } to the first backward() to run backward through it again');
    }
    if (top[1] < node.edges.length) {
      const next = node.edges[top[1]++];
      if (next instanceof GradNode && !seen.has(next)) {
        seen.add(next);
        stack.push([next, 0]);
      }
    } else {
      order.push(node);
      stack.pop();
    }
  }
  return order.reverse();
}
