/**
 * A dispatcher that decides something before handing a request on (which proxy, when it may start):
 * the base of the proxy router and the rate limiter. It passes the request object on as it is: the
 * exchange reads an option getter on it to learn when the request got a connection slot.
 */
import { Dispatcher } from 'undici';

/** A controller for a request refused before any dispatcher took it. */
const REFUSED: Dispatcher.DispatchController = {
  aborted: true,
  paused: false,
  reason: null,
  abort() {},
  pause() {},
  resume() {},
};

/**
 * Ends a request that never reached a dispatcher with `error`, whichever handler API it speaks.
 *
 * @example
 * failRequest(handler, new BlockedAddressError('example.test', '10.0.0.1'));
 */
export function failRequest(handler: Dispatcher.DispatchHandler, error: Error): void {
  if (typeof handler.onResponseError === 'function') handler.onResponseError(REFUSED, error);
  else handler.onError?.(error);
}

/**
 * Base of dispatchers that wrap others: `close` and `destroy` reach the wrapped ones it owns.
 *
 * @example
 * class Logged extends WrappedDispatcher {
 *   dispatch(options, handler) { console.log(options.origin); return this.inner.dispatch(options, handler); }
 * }
 */
export abstract class WrappedDispatcher extends Dispatcher {
  /** The dispatchers this one owns (closed and destroyed with it). */
  protected abstract owned(): Dispatcher[];

  override close(): Promise<void>;
  override close(callback: () => void): void;
  override close(callback?: () => void): Promise<void> | void {
    const done = Promise.all(this.owned().map((d) => d.close())).then(() => undefined);
    if (!callback) return done;
    void done.then(callback, callback);
  }

  override destroy(): Promise<void>;
  override destroy(err: Error | null): Promise<void>;
  override destroy(callback: () => void): void;
  override destroy(err: Error | null, callback: () => void): void;
  override destroy(a?: Error | null | (() => void), b?: () => void): Promise<void> | void {
    const err = typeof a === 'function' ? null : (a ?? null);
    const callback = typeof a === 'function' ? a : b;
    const done = Promise.all(this.owned().map((d) => d.destroy(err))).then(() => undefined);
    if (!callback) return done;
    void done.then(callback, callback);
  }
}
