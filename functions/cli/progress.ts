/**
 * Progress of `fanout fetch`, `resume` and `status --watch`, on stderr:
 * - on a terminal, a bar (cli-progress) sized to the terminal's width; messages are written above
 *   it, never through it, and it is cleared before the summary;
 * - without a terminal (a log, CI), one line every few seconds: done/total, rate, failures by code;
 * - nothing with --quiet.
 */
import { MultiBar, type SingleBar } from 'cli-progress';

/** Progress defaults, stated once. */
export const PROGRESS_DEFAULTS = {
  /** Without a terminal: one line this often. */
  lineEveryMs: 5_000,
  /** The bar's width when the terminal has room. */
  barWidth: 30,
  /** Narrower than this, the bar is left out and only the figures are drawn. */
  minBarWidth: 8,
  /** Assumed terminal width when the stream does not say. */
  columns: 80,
} as const;

export type ProgressMode = 'bar' | 'lines' | 'off';

export interface Progress {
  /** Records of the job so far (all runs) and how many failed. */
  update(done: number, failed: number): void;
  /** A message for the user, written so the bar does not garble it. */
  log(message: string): void;
  /** Stops drawing (the bar is cleared). */
  stop(): void;
}

export interface ProgressOptions {
  stream?: NodeJS.WriteStream;
  /** Records done before this run (a resumed job): the rate counts only this run's. */
  doneBefore?: number;
  /** Lines mode: failures by code so far, e.g. "timeout 3, http 503 2" ('' when none). */
  failures?: () => Promise<string>;
  lineEveryMs?: number;
  /** Lines mode: the wait for connections so far, e.g. "connection wait p50 12 ms" ('' when none). */
  wait?: () => Promise<string>;
}

/**
 * How progress is shown: `--quiet` silences it, a terminal gets a bar, anything else lines.
 *
 * @example
 * progressMode({ quiet: flags.quiet, tty: process.stderr.isTTY }) // 'lines' in CI
 */
export function progressMode({ quiet, tty }: { quiet?: boolean; tty?: boolean }): ProgressMode {
  if (quiet) return 'off';
  return tty ? 'bar' : 'lines';
}

const silent = (stream: NodeJS.WritableStream): Progress => ({
  update() {},
  log: (message) => void stream.write(`${message}\n`),
  stop() {},
});

function rate(done: number, since: number): number {
  const seconds = (Date.now() - since) / 1000;
  return seconds > 0 ? Math.round(done / seconds) : 0;
}

/**
 * Time left at this rate, as 59s, 12m05s or 3h07m; `--` until there is a rate (the bar library's own
 * ETA showed its NULL and INF cut to "LLs" and "NFs" then).
 */
export function etaText(left: number, perSecond: number): string {
  if (left <= 0) return '0s';
  if (!(perSecond > 0)) return '--';
  const s = Math.ceil(left / perSecond);
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, '0')}s`;
  return `${Math.min(999, Math.floor(s / 3600))}h${String(Math.floor((s % 3600) / 60)).padStart(2, '0')}m`;
}

/** The bar's format for a terminal this wide: the bar shrinks, then goes, then figures go, before anything wraps. */
export function barFormat(total: number, columns: number): { format: string; barsize: number } {
  const digits = String(total).length;
  const width = columns - 1; // the last column would wrap on some terminals
  // Widest each part gets: 100%, T/T, a 7-digit rate, an ETA like 999h59m, T failures.
  const figures = ' {percentage}% | {value}/{total} | {rate}/s | ETA {eta} | failed {failed}';
  const figuresWidth = ' 100% | '.length + 2 * digits + 1 + ' | 1234567/s | ETA 999h59m | failed '.length + digits;
  const room = width - figuresWidth - 1;
  if (room >= PROGRESS_DEFAULTS.minBarWidth) return { format: ` {bar}${figures}`, barsize: Math.min(PROGRESS_DEFAULTS.barWidth, room) };
  const shorter: [string, number][] = [
    [figures, figuresWidth],
    ['{percentage}% {value}/{total} failed {failed}', 5 + 2 * digits + 1 + 8 + digits],
    ['{percentage}% {value}/{total}', 5 + 2 * digits + 1],
    ['{percentage}%', 4],
  ];
  const [format] = shorter.find(([, w]) => w <= width) ?? shorter.at(-1)!;
  return { format, barsize: 0 };
}

function bar(total: number, options: ProgressOptions, stream: NodeJS.WriteStream): Progress {
  const started = Date.now();
  const before = options.doneBefore ?? 0;
  const { format, barsize } = barFormat(total, stream.columns || PROGRESS_DEFAULTS.columns);
  const multi = new MultiBar({
    stream,
    format,
    barsize,
    hideCursor: true,
    etaBuffer: 200,
    fps: 8,
    clearOnComplete: true,
    // The commands handle Ctrl-C themselves (and stop the bar first).
    gracefulExit: false,
  });
  const single: SingleBar = multi.create(total, before, { rate: '0', eta: '--', failed: 0 });
  let stopped = false;
  return {
    update(done, failed) {
      if (stopped) return;
      const perSecond = rate(done - before, started);
      single.update(done, { rate: String(perSecond), eta: etaText(total - done, perSecond), failed });
    },
    log(message) {
      if (stopped) stream.write(`${message}\n`);
      else multi.log(`${message}\n`);
    },
    stop() {
      if (stopped) return;
      stopped = true;
      multi.update(); // flush messages logged since the last draw
      multi.stop();
    },
  };
}

function lines(total: number, options: ProgressOptions, stream: NodeJS.WriteStream): Progress {
  const started = Date.now();
  const before = options.doneBefore ?? 0;
  let done = before;
  let failed = 0;
  let writing = false;
  const tick = async () => {
    if (writing) return;
    writing = true;
    try {
      const percent = total > 0 ? Math.floor((100 * done) / total) : 100;
      const failures = failed > 0 ? ((await options.failures?.().catch(() => '')) ?? '') : '';
      const wait = (await options.wait?.().catch(() => '')) ?? '';
      stream.write(
        `fanout: ${done}/${total} done (${percent}%), ${rate(done - before, started)} URLs/s, ` +
          `failed ${failed}${failures ? ` (${failures})` : ''}${wait ? `, ${wait}` : ''}\n`,
      );
    } finally {
      writing = false;
    }
  };
  const timer = setInterval(() => void tick(), options.lineEveryMs ?? PROGRESS_DEFAULTS.lineEveryMs);
  timer.unref();
  return {
    update(d, f) {
      done = d;
      failed = f;
    },
    log: (message) => void stream.write(`${message}\n`),
    stop: () => clearInterval(timer),
  };
}

/**
 * Progress for a job of `total` URLs, drawn as `mode` says.
 *
 * @example
 * const progress = createProgress(job.total, progressMode({ quiet, tty: process.stderr.isTTY }));
 * progress.update(done, failed);
 * progress.stop();
 */
export function createProgress(total: number, mode: ProgressMode, options: ProgressOptions = {}): Progress {
  const stream = options.stream ?? process.stderr;
  if (mode === 'bar') return bar(total, options, stream);
  if (mode === 'lines') return lines(total, options, stream);
  return silent(stream);
}

/**
 * Failures by code for the progress lines, from a status: error codes, then HTTP statuses that are
 * not 2xx.
 *
 * @example
 * failureSummary({ byError: { timeout: 2 }, byStatus: { 200: 5, 503: 1 } }) // 'timeout 2, http 503 1'
 */
export function failureSummary(status: { byError: Record<string, number>; byStatus: Record<string, number> }): string {
  const parts = Object.entries(status.byError).sort((a, b) => b[1] - a[1]).map(([code, n]) => `${code} ${n}`);
  for (const [code, n] of Object.entries(status.byStatus).sort((a, b) => b[1] - a[1])) {
    if (!code.startsWith('2')) parts.push(`http ${code} ${n}`);
  }
  return parts.join(', ');
}

/**
 * The wait for connection slots so far, for the progress lines: said only when the chunks done so
 * far waited longer than their requests took (the per-host limit is holding the run back).
 *
 * @example
 * waitSummary({ queuedMs: { p50: 12, p95: 30, p99: 40 }, queuedSeconds: 9, durationSeconds: 2 }) // 'connection wait p50 12 ms (--per-host holds it back)'
 */
export function waitSummary(status: { queuedMs?: { p50: number | null }; queuedSeconds?: number; durationSeconds?: number }): string {
  const p50 = status.queuedMs?.p50;
  if (p50 === null || p50 === undefined || !status.queuedSeconds || status.queuedSeconds < (status.durationSeconds ?? 0)) return '';
  return `connection wait p50 ${p50} ms (--per-host holds it back)`;
}
