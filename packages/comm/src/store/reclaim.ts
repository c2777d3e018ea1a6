/**
 * Gives memory back to the system after the store dropped connections that
 * held large unfinished frames. Two things keep it otherwise: V8 frees
 * socket chunks only at its next collection (an idle store never has one),
 * and glibc keeps freed 64 KiB read chunks in its heaps (measured: 190 MiB of
 * RSS kept after a 120-connection attack, 55 MiB after collect + trim).
 * Both steps are best effort: without them the store still works.
 */
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';

type Collect = () => void;
type Trim = (pad: number) => number;

let collect: Collect | null | undefined;
let trim: Trim | null | undefined;

/** V8's gc(), obtained once without --expose-gc on the command line (as jest's leak detector does). */
function getCollect(): Collect | null {
  if (collect !== undefined) return collect;
  try {
    setFlagsFromString('--expose-gc');
    collect = runInNewContext('gc') as Collect;
  } catch {
    collect = null;
  } finally {
    setFlagsFromString('--no-expose-gc'); // contexts made later (the user's) stay as they were
  }
  return collect;
}

/** glibc's malloc_trim through koffi, when both exist (not on musl, not without koffi). */
async function getTrim(): Promise<Trim | null> {
  if (trim !== undefined) return trim;
  trim = null;
  if (process.platform !== 'linux') return trim;
  try {
    const koffi = (await import('koffi')).default;
    const libc = koffi.load('libc.so.6');
    trim = libc.func('int malloc_trim(size_t pad)') as unknown as Trim;
  } catch {
    trim = null;
  }
  return trim;
}

/**
 * Collects once every `collectEvery` released bytes (so dropped chunks are
 * reused by the next reads instead of growing the heap while an attack goes
 * on), and trims at most once per `minIntervalMs`, `delayMs` after a release.
 */
export class Reclaimer {
  private timer: NodeJS.Timeout | null = null;
  private immediate: NodeJS.Immediate | null = null;
  private last = 0;
  private released = 0;
  /** Times it trimmed (for tests and diagnostics). */
  runs = 0;

  constructor(
    private readonly collectEvery = 16 << 20,
    private readonly delayMs = 100,
    private readonly minIntervalMs = 250,
  ) {}

  /** `bytes` of buffers just became garbage. */
  request(bytes: number): void {
    this.released += bytes;
    if (this.released >= this.collectEvery && !this.immediate) {
      this.immediate = setImmediate(() => {
        this.immediate = null;
        this.released = 0;
        getCollect()?.();
      });
    }
    if (this.timer) return; // throttled, not debounced: a sustained attack still gets trims
    const wait = Math.max(this.delayMs, this.last + this.minIntervalMs - Date.now());
    this.timer = setTimeout(() => void this.run(), wait);
    this.timer.unref();
  }

  cancel(): void {
    if (this.timer) clearTimeout(this.timer);
    if (this.immediate) clearImmediate(this.immediate);
    this.timer = null;
    this.immediate = null;
  }

  private async run(): Promise<void> {
    this.timer = null;
    this.last = Date.now();
    this.runs++;
    this.released = 0;
    getCollect()?.();
    (await getTrim())?.(0);
  }
}
