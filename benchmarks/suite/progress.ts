// Progress on stderr while the suite runs (stdout stays for the results): a live bar with
// the case under way and the time left when stderr is a terminal, one line per finished
// case otherwise (CI logs).

const BAR = 28;

function clock(seconds: number): string {
  const s = Math.max(0, Math.round(seconds));
  return `${Math.floor(s / 60)}:${String(s % 60).padStart(2, '0')}`;
}

export class Progress {
  readonly #stream = process.stderr;
  readonly #live = process.stderr.isTTY === true;
  readonly #total: number;
  readonly #started = performance.now();
  readonly #timer: NodeJS.Timeout | undefined;
  /** Estimated seconds of each remaining step, so the time left is sensible from the start. */
  readonly #estimates: number[];
  #done = 0;
  #current = '';

  /** `estimates`: the expected seconds of each step (run of a case), in order. */
  constructor(estimates: number[]) {
    this.#estimates = estimates;
    this.#total = estimates.length;
    if (this.#live) this.#timer = setInterval(() => this.#draw(), 250);
  }

  /** A step (one run of a case) begins. */
  start(what: string): void {
    this.#current = what;
    this.#draw();
  }

  /** A step ended; `outcome` is printed on its own line when the output is not live. */
  step(outcome: string | undefined): void {
    this.#done++;
    if (!this.#live && outcome !== undefined) {
      this.#stream.write(`[${this.#done}/${this.#total}] ${outcome}\n`);
    }
    this.#draw();
  }

  /** Skips the steps of a case that will not run (an unavailable transport). */
  skip(steps: number, outcome: string): void {
    for (let i = 0; i < steps; i++) this.step(i === steps - 1 ? outcome : undefined);
  }

  /** Prints a line above the bar. */
  note(line: string): void {
    if (this.#live) this.#stream.write('\r\x1b[2K');
    this.#stream.write(`${line}\n`);
    this.#draw();
  }

  finish(): void {
    if (this.#timer) clearInterval(this.#timer);
    if (this.#live) this.#stream.write('\r\x1b[2K');
    this.#stream.write(
      `${this.#done} of ${this.#total} runs in ${clock((performance.now() - this.#started) / 1000)}\n`,
    );
  }

  #left(): number {
    const elapsed = (performance.now() - this.#started) / 1000;
    const spentEstimate = this.#estimates.slice(0, this.#done).reduce((a, b) => a + b, 0);
    const leftEstimate = this.#estimates.slice(this.#done).reduce((a, b) => a + b, 0);
    // Scale the estimate by how the finished steps compared with theirs.
    const pace = this.#done > 0 && spentEstimate > 0 ? elapsed / spentEstimate : 1;
    return leftEstimate * pace;
  }

  #draw(): void {
    if (!this.#live) return;
    const filled = Math.round((this.#done / Math.max(1, this.#total)) * BAR);
    const bar = `${'█'.repeat(filled)}${'░'.repeat(BAR - filled)}`;
    const elapsed = clock((performance.now() - this.#started) / 1000);
    const text = `${bar} ${this.#done}/${this.#total}  ${elapsed} elapsed, ~${clock(this.#left())} left  ${this.#current}`;
    const width = this.#stream.columns ?? 100;
    this.#stream.write(`\r\x1b[2K${text.slice(0, width - 1)}`);
  }
}
