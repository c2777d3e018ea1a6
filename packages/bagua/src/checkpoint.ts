/**
 * Checkpoints: a model's state dict, with PyTorch's names, in a safetensors
 * file that PyTorch loads as it is
 * (`model.load_state_dict(safetensors.torch.load_file(path))`), and the
 * training state (optimizer, scheduler) in a second file beside it,
 * `<name>.optim.safetensors`: its tensors by path (`state.0.exp_avg`), the
 * rest of the optimizer's and scheduler's state dicts as JSON in its metadata.
 * A second file keeps the model file exactly what PyTorch's load_state_dict
 * accepts (strict). Both files carry the same checkpoint id, so a pair from
 * two different saves (a crash between the writes) is refused.
 *
 * On several ranks, rank 0 writes (each file atomically: a temporary file,
 * then a rename) and every rank learns whether it succeeded; every rank
 * loads, after a barrier.
 */
import { randomUUID } from 'node:crypto';
import { existsSync } from 'node:fs';
import { nn, serialize } from '@bagua/core';
import { defaultGroup, isInitialized, type ProcessGroup } from '@bagua/comm';

/** Anything with PyTorch-style state: an optimizer, a learning-rate scheduler. */
export interface Stateful {
  stateDict(): unknown;
  /** (a method: bivariant, so each optimizer's own state-dict type is accepted) */
  loadStateDict(state: unknown): void;
}

export interface CheckpointParts {
  model: nn.Module;
  optimizer?: Stateful;
  scheduler?: Stateful;
  /** JSON values saved with the model (the epoch, the loss so far, ...) */
  extra?: Record<string, unknown>;
}

export interface CheckpointOptions {
  /** the ranks that save or load together (default: the default group, when initialised) */
  group?: ProcessGroup | null;
}

const KEY_ID = 'bagua.checkpoint';
const KEY_EXTRA = 'bagua.extra';
const KEY_OPTIMIZER = 'bagua.optimizer';
const KEY_SCHEDULER = 'bagua.scheduler';

/** The training-state file beside a checkpoint: `ckpt.safetensors` -> `ckpt.optim.safetensors`. */
export function optimizerPath(path: string): string {
  return path.endsWith('.safetensors') ? `${path.slice(0, -'.safetensors'.length)}.optim.safetensors` : `${path}.optim.safetensors`;
}

function groupOf(opts: CheckpointOptions): ProcessGroup | null {
  if (opts.group !== undefined) return opts.group;
  return isInitialized() ? defaultGroup() : null;
}

/** Runs `fn` (on the ranks `mine` says), then tells every rank of the group whether it failed anywhere. */
function together(group: ProcessGroup | null, what: string, mine: boolean, fn: () => void): void {
  let error: unknown = null;
  if (mine) {
    try {
      fn();
    } catch (e) {
      error = e;
    }
  }
  if (group && group.size > 1) {
    const failed = new Float64Array([error ? group.rank : -1]);
    group.allReduce(failed, 'max');
    if (!error && failed[0] >= 0) throw new Error(`${what}: failed on rank ${failed[0]} (see its error)`);
  }
  if (error) throw error;
}

/** Saves the model (PyTorch's names), and the optimizer and scheduler if given: rank 0 writes, the others wait for it. */
export function saveCheckpoint(path: string, parts: CheckpointParts, opts: CheckpointOptions = {}): void {
  const group = groupOf(opts);
  together(group, `saveCheckpoint(${path})`, !group || group.rank === 0, () => {
    const id = randomUUID();
    if (parts.optimizer || parts.scheduler) {
      const meta: Record<string, string> = { [KEY_ID]: id };
      let tensors = {};
      if (parts.optimizer) {
        const flat = serialize.flattenState(parts.optimizer.stateDict());
        tensors = flat.tensors;
        meta[KEY_OPTIMIZER] = flat.json;
      }
      if (parts.scheduler) {
        const flat = serialize.flattenState(parts.scheduler.stateDict());
        if (Object.keys(flat.tensors).length) throw new Error('saveCheckpoint: the scheduler\'s state holds tensors; only JSON values are saved for it');
        meta[KEY_SCHEDULER] = flat.json;
      }
      serialize.save(optimizerPath(path), tensors, meta);
    }
    // the model file last: it names the id the training-state file must carry
    serialize.save(path, parts.model.stateDict({ torchNames: true }), {
      format: 'pt', [KEY_ID]: id, [KEY_EXTRA]: JSON.stringify(parts.extra ?? {}),
    });
  });
}

/**
 * Loads a checkpoint into the model (and the optimizer and scheduler, when
 * given: their state must be in the checkpoint) on every rank, after a
 * barrier. Returns the `extra` values saved with it. A model file written by
 * PyTorch (safetensors.torch.save_file(model.state_dict(), path)) loads too.
 */
export function loadCheckpoint(path: string, parts: Omit<CheckpointParts, 'extra'>, opts: CheckpointOptions = {}): { extra: Record<string, unknown> } {
  const group = groupOf(opts);
  if (group && group.size > 1) group.barrier();
  let extra: Record<string, unknown> = {};
  together(group, `loadCheckpoint(${path})`, true, () => {
    const model = serialize.loadFile(path);
    const id = model.metadata[KEY_ID];
    extra = model.metadata[KEY_EXTRA] ? JSON.parse(model.metadata[KEY_EXTRA]) as Record<string, unknown> : {};
    parts.model.loadStateDict(serialize.toTensorRecord(model.tensors));
    if (!parts.optimizer && !parts.scheduler) return;
    const trainPath = optimizerPath(path);
    if (!existsSync(trainPath)) throw new Error(`loadCheckpoint: ${trainPath} (the optimizer and scheduler state of ${path}) does not exist`);
    const train = serialize.loadFile(trainPath);
    if (train.metadata[KEY_ID] !== id) {
      throw new Error(`loadCheckpoint: ${trainPath} belongs to another save than ${path} (checkpoint ids ` +
        `${train.metadata[KEY_ID] ?? 'none'} and ${id ?? 'none'}): a save was interrupted between its two files`);
    }
    for (const [name, part, key] of [['optimizer', parts.optimizer, KEY_OPTIMIZER], ['scheduler', parts.scheduler, KEY_SCHEDULER]] as const) {
      if (!part) continue;
      const json = train.metadata[key];
      if (json === undefined) throw new Error(`loadCheckpoint: ${trainPath} holds no ${name} state`);
      const tensors = name === 'optimizer' ? serialize.toTensorRecord(train.tensors) : {};
      part.loadStateDict(serialize.unflattenState(json, tensors));
    }
  });
  return { extra };
}
