/**
 * body-text (the Encoding Standard's decoders, a quarter of the command's code), imported when a body
 * is first kept inline: a job with bodies none or store never loads it (7 ms of start-up for a
 * 40,000-line list). A long-running process (`fanout serve`, worker threads) starts the import at
 * start instead: its file may be gone by the first inline body if the package is reinstalled while
 * it runs (the bundle's chunk names change with every build).
 */
type BodyText = typeof import('./body-text.ts');

let loading: Promise<BodyText> | undefined;

/**
 * The body-text module, imported once.
 *
 * @example
 * const { encodeBody } = await loadBodyText();
 */
export function loadBodyText(): Promise<BodyText> {
  // A failed import is not kept: the next inline body tries again.
  loading ??= import('./body-text.ts').catch((error: unknown) => {
    loading = undefined;
    throw error;
  });
  return loading;
}

/**
 * Starts the import now (a long-running process). A failure is told to `onError` and tried again
 * at the first inline body.
 */
export function preloadBodyText(onError: (error: unknown) => void = () => {}): void {
  loadBodyText().catch(onError);
}
