// A one-line progress bar for `restore` on a terminal (nothing when stderr is a pipe or a file). Small enough
// that a dependency would cost more than it saves.

const MIB = 1024 * 1024;
const WIDTH = 30;
const REDRAW_MS = 100;

export interface ProgressBar {
  update(done: number, total: number | undefined): void;
  finish(): void;
}

export function formatProgress(label: string, done: number, total: number | undefined, seconds: number): string {
  const rate = seconds > 0 ? done / MIB / seconds : 0;
  const amount = `${(done / MIB).toFixed(1)}${total ? `/${(total / MIB).toFixed(1)}` : ''} MiB  ${rate.toFixed(1)} MiB/s`;
  if (!total) return `${label}  ${amount}`;
  const fraction = Math.min(1, done / total);
  const filled = Math.round(fraction * WIDTH);
  return `${label} [${'#'.repeat(filled)}${'.'.repeat(WIDTH - filled)}] ${Math.floor(fraction * 100)
    .toString()
    .padStart(3)}%  ${amount}`;
}

export function progressBar(stream: NodeJS.WriteStream, label: string, clock: () => number = Date.now): ProgressBar {
  if (!stream.isTTY) return { update: () => undefined, finish: () => undefined };
  const started = clock();
  let lastDraw = 0;
  let last: [number, number | undefined] = [0, undefined];
  const draw = () => stream.write(`\r${formatProgress(label, last[0], last[1], (clock() - started) / 1000)}\x1b[K`);
  return {
    update(done, total) {
      last = [done, total];
      if (clock() - lastDraw < REDRAW_MS) return;
      lastDraw = clock();
      draw();
    },
    finish() {
      draw();
      stream.write('\n');
    },
  };
}
