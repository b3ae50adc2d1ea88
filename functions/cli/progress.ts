/**
 * The progress bar of `fanout fetch` and `fanout status --watch`: done/total, rate, ETA and errors
 * so far, drawn on stderr only when it is a terminal (cli-progress does the drawing).
 */
import { SingleBar } from 'cli-progress';

export interface Progress {
  update(done: number, failed: number): void;
  stop(): void;
}

const silent: Progress = { update() {}, stop() {} };

/**
 * A progress bar for `total` URLs, or a no-op when stderr is not a TTY or `enabled` is false.
 *
 * @example
 * const progress = createProgress(job.total, process.stderr.isTTY);
 * progress.update(done, failed);
 */
export function createProgress(total: number, enabled: boolean, stream: NodeJS.WriteStream = process.stderr): Progress {
  if (!enabled) return silent;
  const started = Date.now();
  const bar = new SingleBar({
    stream,
    format: ' {bar} {percentage}% | {value}/{total} | {rate}/s | ETA {eta_formatted} | failed {failed}',
    barsize: 30,
    hideCursor: true,
    etaBuffer: 200,
    fps: 8,
    clearOnComplete: false,
  });
  bar.start(total, 0, { rate: '0', failed: 0 });
  return {
    update(done, failed) {
      const seconds = (Date.now() - started) / 1000;
      bar.update(done, { rate: seconds > 0 ? Math.round(done / seconds).toString() : '0', failed });
    },
    stop() {
      bar.stop();
    },
  };
}
