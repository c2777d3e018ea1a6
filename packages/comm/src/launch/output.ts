/** Line-oriented output handling for the ranks of a job. */

/** Prefixes every complete line; holds a partial last line until more data or end(). */
export class LinePrefixer {
  private partial = '';
  constructor(
    private readonly prefix: string,
    private readonly sink: (text: string) => void,
  ) {}

  push(chunk: string | Buffer): void {
    const text = this.partial + (typeof chunk === 'string' ? chunk : chunk.toString('utf8'));
    const cut = text.lastIndexOf('\n');
    if (cut < 0) {
      this.partial = text;
      return;
    }
    this.partial = text.slice(cut + 1);
    const lines = text.slice(0, cut).split('\n');
    this.sink(lines.map((l) => this.prefix + l + '\n').join(''));
  }

  end(): void {
    if (this.partial) this.sink(this.prefix + this.partial + '\n');
    this.partial = '';
  }
}

/** How a runner treats its ranks' stdout/stderr. */
export type OutputMode =
  | 'inherit' // straight to this process's stdout/stderr
  | 'prefix' // to this process's stdout/stderr, each line as `[rank N] ...`
  | 'capture'; // collected into the result (also what tests use)

export class RankOutput {
  readonly stdout: string[];
  readonly stderr: string[];
  private readonly writers: { out: LinePrefixer; err: LinePrefixer }[] = [];

  constructor(
    n: number,
    private readonly mode: OutputMode,
    rankOf: (i: number) => number,
  ) {
    this.stdout = Array.from({ length: n }, () => '');
    this.stderr = Array.from({ length: n }, () => '');
    for (let i = 0; i < n; i++) {
      const p = `[rank ${rankOf(i)}] `;
      this.writers.push({
        out: new LinePrefixer(p, (s) => process.stdout.write(s)),
        err: new LinePrefixer(p, (s) => process.stderr.write(s)),
      });
    }
  }

  out(i: number, chunk: string | Buffer): void {
    if (this.mode === 'capture') this.stdout[i] += chunk.toString();
    else if (this.mode === 'prefix') this.writers[i]!.out.push(chunk);
    else process.stdout.write(chunk);
  }

  err(i: number, chunk: string | Buffer): void {
    if (this.mode === 'capture') this.stderr[i] += chunk.toString();
    else if (this.mode === 'prefix') this.writers[i]!.err.push(chunk);
    else process.stderr.write(chunk);
  }

  end(i: number): void {
    this.writers[i]!.out.end();
    this.writers[i]!.err.end();
  }
}
